"""WMDP: four-choice question accuracy on the forget domain (WMDP) and on general knowledge (MMLU),
scored by log-likelihood (:mod:`.choices`), and the evaluator (:mod:`.evaluate`)."""
