"""Annapurna's Dagster asset graph: papers -> judgments -> generated_code -> test_results."""
