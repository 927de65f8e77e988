"""What every text method shares: the core :class:`~polydiff.core.method.Method` with a tokenizer.

A method (``mdlm.py``, ``udlm.py``, ``blockgen.py``, ``ar.py``) is one file holding its config,
network, training loss ``loss_fn(net, batch)`` (what :class:`polydiff.core.train.DiffusionModule`
trains) and its sampling recipe. This module holds the bases they build on and imports none of
them:

- :class:`TextConfig`: a method config (a core :class:`~polydiff.core.method.Config` with a
  ``transformer`` field) that serialises itself;
- :class:`TextMethod`: the core Method of domain ``"text"`` with a ``tokenizer`` saved beside
  the weights (``folder/tokenizer``, its kind / vocabulary / fingerprint in ``config.json``),
  the bidirectional network by default, the prompt encoding, one calling convention for
  sampling (:func:`sampling_options`) and for held-out perplexity
  (:meth:`TextMethod.held_out_perplexity`: exact or a bound, by model);
- :class:`DiffusionLM`: loss, perplexity bound and sampling of the methods whose ``path`` is a
  core discrete path (MDLM, UDLM); :func:`masked_path` (MDLM, BlockGen);
- :func:`load_method` (a call to the core's, which finds the methods through the core
  registry), :func:`new_method` and the shipped checkpoints.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polydiff.core.discrete import MaskedDiffusion, get_discrete_schedule
from polydiff.core.io import atomic_write_json
from polydiff.core.method import FORMAT, Config, Method, method_class
from polydiff.core.method import load_method as core_load_method
from polydiff.text.data.tokenizer import Tokenizer, load_tokenizer
from polydiff.text.losses import HELD_OUT_TIME_SAMPLES, diffusion_nelbo, nelbo_perplexity
from polydiff.text.nets import DiffusionTransformer, TransformerConfig
from polydiff.text.sampling import SampleResult, sample_diffusion

__all__ = [
    "DOMAIN",
    "DiffusionLM",
    "TextConfig",
    "TextMethod",
    "load_method",
    "masked_path",
    "new_method",
    "sampling_options",
    "shipped_checkpoint",
    "shipped_reference",
    "upgrade_checkpoint",
]

DOMAIN = "text"
TOKENIZER_DIR = "tokenizer"
LEGACY_FORMAT = "polydiff-text-method"  # config.json of checkpoints before the core Method


class TextConfig(Config):
    """Mixin of the text method configs: the core's ``to_dict`` / ``from_dict``, with the
    ``transformer`` field rebuilt by :meth:`TransformerConfig.from_dict`."""

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> Any:
        data = dict(data)
        if isinstance(data.get("transformer"), dict):
            try:
                data["transformer"] = TransformerConfig.from_dict(data["transformer"])
            except (TypeError, ValueError) as err:
                raise ValueError(f"{source}: {err}") from None
        return super().from_dict(data, source)


def tokenizer_info(tokenizer: Tokenizer) -> dict[str, Any]:
    """What a checkpoint records of its tokenizer (compared at load time)."""
    return {
        "kind": tokenizer.kind,
        "vocab_size": tokenizer.vocab_size,
        "fingerprint": tokenizer.fingerprint(),
        "special_ids": list(tokenizer.special_ids),
    }


def sampling_options(
    sample: Callable[..., Any] | None = None, *, like: Callable[..., Any] | None = None
) -> Any:
    """Decorator of a method's ``sample(self, n, length=None, *, <options>)`` (run without
    gradients): every text method is then called the same way, so a caller passes one options
    dict to any of them. An option given as None takes the method's default; an option the
    method does not take is one ValueError naming it and the ones it takes. ``sample.options``
    lists them. ``like=fn``: a ``sample(self, n, length=None, **options)`` that hands its
    options to ``fn`` takes ``fn``'s keyword-only parameters (but ``device``: the method's)."""
    if sample is None:
        return functools.partial(sampling_options, like=like)
    params = inspect.signature(like or sample).parameters.values()
    options = tuple(p.name for p in params if p.kind is p.KEYWORD_ONLY and p.name != "device")
    sample = torch.no_grad()(sample)

    @functools.wraps(sample)
    def checked(self: TextMethod, n: int, length: int | None = None, **given: Any) -> Any:
        unknown = sorted(set(given) - set(options))
        if unknown:
            raise ValueError(
                f"{self.name} sampling takes no option {', '.join(unknown)} "
                f"(its options: {', '.join(options)})"
            )
        for name, value in (("n", n), ("length", length)):
            if value is not None and not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        return sample(self, n, length, **{k: v for k, v in given.items() if v is not None})

    checked.options = options  # type: ignore[attr-defined]
    return checked


class TextMethod(Method):
    """Base of the text methods: ``config`` (a :class:`TextConfig` with a ``transformer``
    field), the ``tokenizer`` and the network ``net`` (built from the config unless given)."""

    domain: ClassVar[str] = DOMAIN
    time_conditioning: ClassVar[str] = "none"
    """What a network config's time_conditioning "none" becomes in :meth:`create` (UDLM:
    "adaln", since with uniform noise corrupted tokens look like clean ones)."""

    def __init__(self, config: Any, tokenizer: Tokenizer, net: nn.Module | None = None) -> None:
        if config.transformer.vocab_size != tokenizer.vocab_size:
            raise ValueError(
                f"{self.name}: transformer vocab_size={config.transformer.vocab_size} differs "
                f"from the tokenizer's vocabulary ({tokenizer.vocab_size})"
            )
        self.tokenizer = tokenizer
        super().__init__(config, net)

    def build_net(self) -> nn.Module:
        """The bidirectional :class:`DiffusionTransformer` of the diffusion LMs."""
        return DiffusionTransformer(self.config.transformer)

    @classmethod
    def make_config(cls, transformer: TransformerConfig, **options: Any) -> Any:
        """The method's config from its network config and its other fields (a method may take
        other forms of them, e.g. BlockGen's block sizes as a list with weights)."""
        return cls.config_class(transformer, **options)

    @classmethod
    def create(
        cls,
        tokenizer: Tokenizer,
        seq_len: int,
        network: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> TextMethod:
        """A freshly initialised method for ``tokenizer`` with context ``seq_len``: ``network``
        holds :class:`TransformerConfig` fields, ``options`` the method config's other fields."""
        net = dict(network or {})
        if net.get("time_conditioning", "none") == "none":
            net["time_conditioning"] = cls.time_conditioning
        transformer = TransformerConfig(vocab_size=tokenizer.vocab_size, max_seq_len=seq_len, **net)
        try:
            config = cls.make_config(transformer, **options)
        except TypeError as err:  # an option the config does not have
            raise ValueError(f"{cls.name}: {err}") from None
        return cls(config, tokenizer)

    @property
    def context(self) -> int:
        """The longest sequence the network takes (the default sample length)."""
        return self.config.transformer.max_seq_len

    def _tokens(self, batch: Any) -> Tensor:
        """The token tensor of a batch (a tensor, or the first entry of a tuple / list)."""
        x0 = batch[0] if isinstance(batch, (tuple, list)) else batch
        if not isinstance(x0, Tensor) or x0.dim() != 2:
            raise ValueError(f"{self.name}: a batch must be token ids [B, L], got {type(x0)}")
        return x0.long()

    def loss_mask(self, x0: Tensor) -> Tensor:
        """Tokens counted in the loss: everything but padding."""
        return x0 != self.tokenizer.pad_id

    # --- prompts and text ---------------------------------------------------------------------

    def encode_prompt(self, prompt: str | Sequence[int] | Tensor | None) -> Tensor | None:
        """Token ids of a prompt: text is encoded as [BOS] + tokens, ids are kept as given."""
        if prompt is None or not isinstance(prompt, str):
            return None if prompt is None else torch.as_tensor(prompt, dtype=torch.long)
        return torch.tensor([self.tokenizer.bos_id, *self.tokenizer.encode(prompt)])

    def decode(self, tokens: Tensor) -> list[str]:
        """Text of each sample; special tokens (BOS/EOS/PAD) are dropped."""
        return [self.tokenizer.decode(row.tolist()) for row in tokens]

    @property
    def sample_options(self) -> tuple[str, ...]:
        """The options :meth:`sample` takes (see :func:`sampling_options`)."""
        return getattr(type(self).sample, "options", ())

    def pick_sample_options(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The entries of ``settings`` (e.g. a command line's) that :meth:`sample` takes, so one
        settings object serves every method; an empty prompt is no prompt."""
        options = {k: settings[k] for k in self.sample_options if k in settings}
        if "prompt" in options:
            options["prompt"] = options["prompt"] or None
        return options

    # --- held-out perplexity ------------------------------------------------------------------

    def held_out_perplexity(
        self,
        batches: Iterable[Tensor],
        *,
        n_time_samples: int = HELD_OUT_TIME_SAMPLES,
        generator=None,
    ) -> dict[str, float]:
        """The model's perplexity on held-out batches as the field reports it: ``{"ppl": x}``
        (exact: a causal LM) or ``{"ppl_bound": x, "ppl_bound_se": its standard error}`` (an
        upper bound: a diffusion LM's NELBO with ``n_time_samples`` antithetic time draws per
        sequence; ``generator`` None: torch's global one)."""
        bound, error = self.perplexity_bound_estimate(
            batches, n_time_samples=n_time_samples, generator=generator
        )
        return {"ppl_bound": bound, "ppl_bound_se": error}

    def perplexity_bound(self, batches: Iterable[Tensor], *args: Any, **kwargs: Any) -> float:
        """exp(NELBO / token) on held-out batches: an upper bound on the model's perplexity
        (:meth:`perplexity_bound_estimate` without its standard error)."""
        return self.perplexity_bound_estimate(batches, *args, **kwargs)[0]

    def perplexity_bound_estimate(
        self, batches: Iterable[Tensor], *args: Any, **kwargs: Any
    ) -> tuple[float, float]:
        """The perplexity bound and its standard error
        (:func:`~polydiff.text.losses.perplexity_with_error`)."""
        raise NotImplementedError(f"{type(self).__name__}.perplexity_bound_estimate")

    # --- saving and loading -------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        return {"tokenizer": tokenizer_info(self.tokenizer)}

    def save_extra(self, folder: Path) -> None:
        self.tokenizer.save(folder / TOKENIZER_DIR)

    @classmethod
    def from_saved(
        cls,
        folder: Path,
        config: Any,
        saved: dict[str, Any],
        tokenizer: Tokenizer | None = None,
    ) -> TextMethod:
        """The method with the saved tokenizer, or ``tokenizer`` if it is the same one."""
        if tokenizer is None:
            return cls(config, load_tokenizer(folder / TOKENIZER_DIR))
        trained, given = saved["tokenizer"], tokenizer_info(tokenizer)
        if (given["fingerprint"], given["vocab_size"]) != (
            trained["fingerprint"],
            trained["vocab_size"],
        ):
            raise ValueError(
                f"{folder}: checkpoint was trained with a {trained['kind']} tokenizer (vocabulary "
                f"{trained['vocab_size']}, fingerprint {trained['fingerprint']}), but the "
                f"tokenizer given is {given['kind']} (vocabulary {given['vocab_size']}, "
                f"fingerprint {given['fingerprint']}): use the checkpoint's own tokenizer "
                f"({folder / TOKENIZER_DIR})"
            )
        return cls(config, tokenizer)


def masked_path(tokenizer: Tokenizer, schedule: str, eps: float) -> MaskedDiffusion:
    """The core's masked diffusion path over the tokenizer's vocabulary, its ``<mask>`` the
    absorbing state (MDLM, BlockGen)."""
    return MaskedDiffusion(
        tokenizer.vocab_size, mask_index=tokenizer.mask_id,
        schedule=get_discrete_schedule(schedule, eps),
    )  # fmt: skip


class DiffusionLM(TextMethod):
    """Training loss, perplexity bound and sampling shared by the diffusion LMs whose ``path``
    is a core discrete path (MDLM, UDLM): the continuous-time NELBO of that path, and
    :func:`~polydiff.text.sampling.sample_diffusion` with ``default_solver``."""

    path: Any  # a core discrete path, defined by the method
    default_solver: ClassVar[str]

    @sampling_options(like=sample_diffusion)
    def sample(self, n: int, length: int | None = None, **options: Any) -> SampleResult:
        """Sample ``n`` sequences (default length: the model's context) with a core solver (the
        method's ``default_solver``, 128 steps unless given); the options are those of
        :func:`~polydiff.text.sampling.sample_diffusion`, a text prompt is encoded as
        [BOS] + tokens."""
        options = {"steps": 128, "solver": self.default_solver, **options}
        options["prompt"] = self.encode_prompt(options.get("prompt"))
        path, length = self.path, length or self.context
        return sample_diffusion(self.net, path, n, length, device=self.device, **options)

    def loss_fn(self, net: nn.Module, batch: Any) -> dict[str, Tensor]:
        """NELBO per token (nats) of a batch of token ids [B, L], padding not counted."""
        x0 = self._tokens(batch)
        out = diffusion_nelbo(
            net, x0, self.path, loss_mask=self.loss_mask(x0), t_min=self.config.t_min
        )
        return {"loss": out.loss}

    @torch.no_grad()
    def perplexity_bound_estimate(
        self,
        batches: Iterable[Tensor],
        n_time_samples: int = HELD_OUT_TIME_SAMPLES,
        generator=None,
    ) -> tuple[float, float]:
        """exp(NELBO / token) on held-out batches (an upper bound on the model's perplexity)
        and its standard error."""
        return nelbo_perplexity(
            self.net, batches, self.path, pad_id=self.tokenizer.pad_id,
            n_time_samples=n_time_samples, generator=generator,
        )  # fmt: skip


def new_method(
    name: str,
    tokenizer: Tokenizer,
    seq_len: int,
    network: Mapping[str, Any] | None = None,
    **options: Any,
) -> TextMethod:
    """A freshly initialised text method by name (``mdlm | udlm | blockgen | ar``), see
    :meth:`TextMethod.create`; an unknown name is a ValueError listing the known ones."""
    return method_class(DOMAIN, name).create(tokenizer, seq_len, network, **options)


SHIPPED_CHECKPOINT = Path(__file__).parent / "checkpoints" / "shakespeare-mdlm"
"""The small MDLM shipped with polydiff-text (how it was made: its README.md)."""


SHIPPED_REFERENCE = Path(__file__).parent / "checkpoints" / "shakespeare-ar-reference"
"""The causal LM shipped as the gen-PPL reference of the shipped MDLM: same size and tokenizer,
trained on the disjoint ``reference`` split (how it was made: its README.md)."""


def _shipped(folder: Path, what: str) -> Path:
    if not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(
            f"the shipped {what} is missing from {folder} (incomplete install?)"
        )
    return folder


def shipped_checkpoint() -> Path:
    """Folder of the shipped Shakespeare MDLM, loadable with :func:`load_method`."""
    return _shipped(SHIPPED_CHECKPOINT, "checkpoint")


def shipped_reference() -> Path:
    """Folder of the shipped AR reference model for generative perplexity (:func:`load_method`)."""
    return _shipped(SHIPPED_REFERENCE, "reference model")


def _legacy_config(folder: Path) -> dict[str, Any] | None:
    """The ``config.json`` of a checkpoint saved before the core Method (format
    ``polydiff-text-method``) in the core's format (the same fields), else None."""
    from polydiff.core.train.weights import load_config

    old = load_config(folder)
    if old.get("format") != LEGACY_FORMAT:
        return None
    new = {"format": FORMAT, "version": 1, "domain": DOMAIN, "method": old.get("method")}
    new.update({k: v for k, v in old.items() if k not in ("format", "version", "method")})
    return new


def upgrade_checkpoint(folder: str | Path) -> Path:
    """Rewrite the ``config.json`` of a text checkpoint saved before the core Method (format
    ``polydiff-text-method``; :func:`load_method` reads it as it is) in the core's format; the
    weights and the tokenizer are untouched."""
    from polydiff.core.train.weights import CONFIG_FILE

    folder = Path(folder)
    new = _legacy_config(folder) if (folder / CONFIG_FILE).is_file() else None
    if new is None:
        raise ValueError(f"{folder / CONFIG_FILE}: not a {LEGACY_FORMAT} checkpoint")
    atomic_write_json(folder / CONFIG_FILE, new)
    return folder


def load_method(
    folder: str | Path, tokenizer: Tokenizer | None = None, device: str | torch.device = "cpu"
) -> TextMethod:
    """Rebuild a text method saved by :meth:`TextMethod.save` (the core's
    :func:`~polydiff.core.method.load_method`: weights loaded, net in eval mode); a checkpoint
    saved before the core Method (format ``polydiff-text-method``) loads as it is.

    Without ``tokenizer`` the one saved next to the weights is used. A tokenizer that is not the
    one the model was trained with (other fingerprint or vocabulary) raises a ValueError naming
    the checkpoint: its token ids would mean other strings.
    """
    from polydiff.core.train.weights import CONFIG_FILE

    folder = Path(folder)
    if not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(
            f"{folder / CONFIG_FILE}: missing; {folder} is not a text checkpoint"
        )
    saved = _legacy_config(folder)
    return core_load_method(folder, domain=DOMAIN, device=device, saved=saved, tokenizer=tokenizer)  # type: ignore[return-value]
