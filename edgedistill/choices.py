"""Fixed choices of the train and export stages, torch-free so that reading a pipeline file imports no torch.

Student training modes (`--mode`, pipeline `student.mode`):

  auto               train label-only and the rationale modes on one split; ship label-only unless another
                     beats it on validation beyond noise
  label-only         the teacher's labels (and label_probs as soft targets where a row has them)
  multitask          + a decoder that writes the teacher's rationale (Distilling Step-by-Step)
  rationale-teacher  + soft labels and head states of an encoder that read input + rationale (KNIFE)
  rationale-dropout  the rationale appended to the input on a share of the steps
  standard           gold labels, no teacher (a reference)
"""

MODES = ("auto", "label-only", "multitask", "rationale-teacher", "rationale-dropout", "standard")
RATIONALE_MODES = ("multitask", "rationale-teacher", "rationale-dropout")
ENCODER_ONLY_MODES = ("rationale-teacher", "rationale-dropout")  # they change the input: no seq2seq
CANDIDATE_MODES = ("label-only", *RATIONALE_MODES)  # what auto may try
RATIONALE_DECODERS = ("separate", "shared")
# train --min-steps: a run whose --epochs give fewer optimizer steps trains more epochs, up to this many steps.
# 180 e-SNLI rows at 3 epochs are 36 steps of 16 rows, and every seed ended at the one-class floor (34.0 /
# refused / 36.0 % test); at 150 steps, with a retry at twice the steps, every label-only seed leaves it (45.2 ±
# 2.3 %), and 700 rows at 150 steps (4 epochs) test as at 3 (benchmarks/results/min_steps.md). Too few iterations,
# not too few rows, is what fails few-sample fine-tuning (Mosbach et al. 2021; Zhang et al. 2021).
MIN_STEPS = 150
POOLINGS = ("auto", "mean", "cls", "two-tower")  # train --pooling: what the label head reads (distill.student.pooling_for)
# train --numeric: how a student answers a numeric task (distill.student.family_for). expressions: an encoder ranks
# the one-operation expressions over the problem's numbers (edge.expressions) as a multiple-choice student;
# generate: a seq2seq student writes the answer (an encoder becomes bert2bert); auto: expressions for an
# encoder base, generate for a T5/BART base
NUMERIC = ("auto", "expressions", "generate")

QUANTIZE = ("int8", "none")  # export --quantize
TARGETS = ("auto", "x86", "arm64")  # export --target: the CPU the INT8 graph is tuned for
# export --smooth: the SmoothQuant alpha applied before dynamic INT8 (deploy.quantize.smooth_activations, where the
# alphas are measured); 0 turns smoothing off
SMOOTH_ALPHA = 0.8
