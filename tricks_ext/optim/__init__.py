"""Optimizers: Ranger (GC + RAdam + Lookahead) and FusedAdam/AdamW/RAdam with gc= and lookahead_k= options."""
