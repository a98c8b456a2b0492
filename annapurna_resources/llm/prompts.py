"""Prompt versions and the program contract every generated program must follow.

A judgment is keyed by (paper content hash, judge prompt version, model) and a program by
(paper, generator model, code prompt version): bump a version when its prompt changes meaningfully.
"""

JUDGE_PROMPT_VERSION = "judge-v1"
CODE_PROMPT_VERSION = "code-v1"

PROGRAM_CONTRACT = """\
Rules for the program (it runs unattended on an AWS Trainium host, a GPU or a CPU):
- Load data only with `from dataset_loader import load_dataset`;
  `train, test, info = load_dataset(NAME, batch_size=B)` for one of cifar10, cifar100, mnist,
  fashion_mnist, imdb, wikitext2, synthetic (`kind=` image|text|sequence for synthetic).
- Get the device with `from annapurna_device import get_device, step_sync, time_budget_s`;
  call `step_sync()` once per training step.
- Import everything you use explicitly; a single file, standard library + torch + numpy only.
- Print progress as lines `METRICS: {json}` (json.dumps of a flat dict with numbers: step, epoch,
  loss, accuracy, ...), at least one per epoch and one final line.
- Stop training before `time_budget_s()` seconds have passed since start.
- Keep tensor shapes fixed (drop_last batches; pad sequences) so XLA compiles each graph once.
- XLA rules: no `mask=` keyword to nn.TransformerEncoder/Decoder (use `src_key_padding_mask`/a causal
  mask argument by position), no in-place masked assignment (`x[mask] = v`; use torch.where), no
  `torch.dot` on batched tensors (use matmul/einsum), interpolation weights as scalar tensors.
"""
