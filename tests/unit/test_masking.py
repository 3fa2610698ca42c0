"""A packed unit's tokens are masked in one registration: every token redacted, one compile however many."""

import re
from pathlib import Path

from airflow.sdk._shared.secrets_masker import _secrets_masker, redact
from airflow.sdk._shared.secrets_masker.secrets_masker import SecretsMasker
from airflow.sdk.execution_time import task_runner
from airflow.sdk.execution_time.request_handlers import handle_mask_secret

from export_hooks.masking import SECRET_MASK_ADAPTER, mask_secret_once, mask_secrets, split_secret_list

REAL_COMPILE = re.compile


def count_compiles(monkeypatch, marker: str) -> list[str]:
    """Record every regex compiled from here on whose pattern holds ``marker`` (a test's tokens)."""
    compiled: list[str] = []

    def counting_compile(pattern, *args, **kwargs):
        if isinstance(pattern, str) and marker in pattern:
            compiled.append(pattern)
        return REAL_COMPILE(pattern, *args, **kwargs)

    monkeypatch.setattr(re, "compile", counting_compile)
    return compiled


def test_every_token_is_redacted_as_airflows_own_masking_would(monkeypatch):
    tokens = [f"shpat_masking_{n:032x}" for n in range(300)]
    compiled = count_compiles(monkeypatch, "shpat_masking_")
    mask_secrets([*tokens, f"  {tokens[0]}  ", "", "   "])
    monkeypatch.setattr(re, "compile", REAL_COMPILE)

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
    compiled = count_compiles(monkeypatch, "")
    _secrets_masker().add_mask(token)
    assert compiled == []
    assert redact(f"x {token} y") == "x *** y"


def test_with_the_adapter_configured_each_process_compiles_once_and_the_supervisor_gets_one_message(monkeypatch):
    """The production setting: the task and its supervisor each add every token with one compile."""
    tokens = [f"shpat_adapted_{n:032x}" for n in range(300)]
    sent = []

    class SupervisorComms:  # what the task sends its supervisor, kept to be handled as the supervisor does
        def send(self, message):
            sent.append(message)

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", SupervisorComms(), raising=False)
    monkeypatch.setattr(_secrets_masker(), "secret_mask_adapter", split_secret_list)
    compiled = count_compiles(monkeypatch, "shpat_adapted_")
    mask_secrets(tokens)
    assert len(compiled) == 1
    assert len(sent) == 1

    # The supervisor's side, as Airflow runs it: a fresh masker with the same setting handles the one message.
    supervisor = SecretsMasker()
    supervisor.secret_mask_adapter = split_secret_list
    monkeypatch.setattr("airflow.sdk.log._secrets_masker", lambda: supervisor)
    compiled.clear()
    handle_mask_secret(sent[0])
    monkeypatch.setattr(re, "compile", REAL_COMPILE)
    assert len(compiled) == 1
    line = f"shop a {tokens[0]}, shop b {tokens[299]}"
    assert supervisor.redact(line) == "shop a ***, shop b ***"
    assert split_secret_list("an ordinary password") == []
    # Every process that runs tasks is given the adapter: the production image and the local stacks.
    assert f"AIRFLOW__LOGGING__SECRET_MASK_ADAPTER={SECRET_MASK_ADAPTER}" in Path("Dockerfile").read_text()


def test_a_token_its_unit_masked_costs_the_hook_no_message_to_the_supervisor(monkeypatch):
    sent = []

    class SupervisorComms:
        def send(self, message):
            sent.append(message)

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", SupervisorComms(), raising=False)
    unit_token, lone_token = "shpat_once_unit_0123456789abcdef", "shpat_once_lone_0123456789abcdef"
    mask_secrets([unit_token])
    mask_secret_once(unit_token)
    assert [message.value for message in sent] == [[unit_token]]
    mask_secret_once(lone_token)  # not masked yet: masked here and told to the supervisor
    assert sent[-1].value == lone_token and redact(f"x {lone_token}") == "x ***"
