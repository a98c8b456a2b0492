from annapurna_assets.program_validation import validate_program

GOOD = 'import torch\nfrom annapurna_device import time_budget_s\nfrom dataset_loader import load_dataset\nprint("METRICS: {}", time_budget_s())\n'


def test_a_contract_abiding_program_has_no_findings() -> None:
    assert validate_program(GOOD) == []


def test_findings_name_what_is_wrong() -> None:
    assert validate_program("def f(:\n")[0].startswith("syntax error at line 1")
    findings = validate_program("import numpy\nprint('hi')\n")
    assert any("dataset_loader" in f for f in findings)
    assert any("METRICS" in f for f in findings)
    assert any("torch" in f for f in findings)
