"""Membership inference, shared by the TOFU and MUSE evaluators: the scores, their AUC and PrivLeak
(:mod:`.scores`), the attacks of one teacher-forced pass (:mod:`.attacks`) and the two opt-in ones
that need more (:mod:`.extra`)."""
