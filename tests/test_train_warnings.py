"""Training prints no warning about peft's use of transformers' deprecated checkpointing alias
(once per wrap, i.e. every run and every RAFT cycle), and silences nothing else."""

from __future__ import annotations

import warnings

import pytest

ALIAS = "`is_gradient_checkpointing` is deprecated"


@pytest.mark.slow  # builds the tiny model (about a minute on 2 cores)
def test_wrapping_the_model_hides_only_the_checkpointing_alias_warning(tiny_model) -> None:
    from peft import LoraConfig, get_peft_model

    from halo_forge.model_loading import load_causal_lm
    from halo_forge.train import quiet_checkpointing_alias

    model = load_causal_lm(str(tiny_model), dtype="float32")
    with warnings.catch_warnings(record=True) as bare:  # the warning this is about exists
        warnings.simplefilter("always")
        _ = model.is_gradient_checkpointing
    assert any(ALIAS in str(w.message) for w in bare)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_checkpointing_alias():
            get_peft_model(model, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj"],
                                             task_type="CAUSAL_LM"))
            warnings.warn("some other change", FutureWarning, stacklevel=1)
    messages = [str(w.message) for w in caught]
    assert not any(ALIAS in m for m in messages)
    assert "some other change" in messages
