"""polydiff.text: discrete diffusion language models (masked, uniform, block) on your own text.

Sub-packages: :mod:`polydiff.text.data` (readers, built-in corpora, tokenizers, splits, packing,
token cache), :mod:`polydiff.text.nets` (bidirectional denoiser, causal LM, block masks, KV
caches), :mod:`polydiff.text.losses` (MDLM / UDLM / BD3LM NELBOs) and
:mod:`polydiff.text.metrics` (AR perplexity, generative perplexity, unigram entropy).

Methods, one file each (config + network + loss + sampling recipe, checkpoints through
:mod:`polydiff.text.method`): :mod:`~polydiff.text.mdlm`, :mod:`~polydiff.text.udlm`,
:mod:`~polydiff.text.blockgen`, :mod:`~polydiff.text.ar` (all in :mod:`polydiff.text.methods`).
Sampling recipes on the core's discrete solvers: :mod:`polydiff.text.sampling`; the gen-PPL vs
entropy frontier and throughput: :mod:`polydiff.text.evaluation`. See docs/text.md.
"""
