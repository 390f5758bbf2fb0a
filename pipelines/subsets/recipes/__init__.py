"""Preset subset recipes (YAML) reproducing the Biomed-Enriched variants; see docs/subsets.md."""
