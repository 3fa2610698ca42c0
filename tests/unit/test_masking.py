"""A packed unit's tokens are masked in one registration: every token redacted, one compile however many."""

import re

from airflow.sdk._shared.secrets_masker import _secrets_masker, redact
from airflow.sdk._shared.secrets_masker.secrets_masker import SecretsMasker

from export_hooks.masking import mask_secrets


def test_every_token_is_redacted_as_airflows_own_masking_would(monkeypatch):
    tokens = [f"shpat_masking_{n:032x}" for n in range(300)]
    compiled = []
    real_compile = re.compile

    def counting_compile(pattern, *args, **kwargs):
        if isinstance(pattern, str) and "shpat_masking_" in pattern:
            compiled.append(pattern)
        return real_compile(pattern, *args, **kwargs)

    monkeypatch.setattr(re, "compile", counting_compile)
    mask_secrets([*tokens, f"  {tokens[0]}  ", "", "   "])
    monkeypatch.setattr(re, "compile", real_compile)

    assert len(compiled) == 1  # Airflow's add_mask, token by token, compiles 300 times
    line = f"Shop a: {tokens[0]} and shop b: {tokens[299]}, headers {{'X-Shopify-Access-Token': '{tokens[150]}'}}"
    assert redact(line) == "Shop a: *** and shop b: ***, headers {'X-Shopify-Access-Token': '***'}"
    # The same patterns as Airflow's own masker given the tokens one by one.
    reference = SecretsMasker()
    for token in tokens:
        reference.add_mask(token)
    assert reference.patterns <= _secrets_masker().patterns


def test_a_token_masked_again_by_the_hook_compiles_nothing(monkeypatch):
    token = "shpat_masking_again_0123456789abcdef"
    mask_secrets([token])
    compiled = []
    real_compile = re.compile
    monkeypatch.setattr(re, "compile", lambda p, *a, **k: compiled.append(p) or real_compile(p, *a, **k))
    _secrets_masker().add_mask(token)
    assert compiled == []
    assert redact(f"x {token} y") == "x *** y"
