"""halo-forge's verifier inside other trainers.

    halo_forge.integrations.trl    a reward function for TRL's GRPOTrainer(reward_funcs=[...])
    halo_forge.integrations.verl   compute_score / compute_score_batch for verl's
                                   custom_reward_function

Both go through background.BackgroundVerifier: one Verifier (its sandbox, verdict cache and
warm interpreters) per process, alive across calls on an event loop of its own. Neither module
imports its trainer: verl is never imported, TRL only to ask whether it awaits async rewards.
"""
