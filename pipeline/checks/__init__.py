"""Checking submissions against the rules of rules.yaml, one class per kind of rule.

The flow: `load` rules.yaml (the campaign, its rules compiled into objects: `Ruleset.of(rules)`); `prepare`
each read file (its values normalised, what normalisation noticed worded as findings; done in the worker
that read it); then `validate.validate` all prepared forms together (a pandera schema per form, and the rules
across a unit's forms), which returns a `Report` per form and changes nothing it was given.

Importing this package loads no pandas or pandera: `validate` and `schema` do, when imported.
"""

from pipeline.campaign.config import ConfigError
from pipeline.checks.ruleset import Kind, Ruleset, load, loads, prepare

__all__ = ["ConfigError", "Kind", "Ruleset", "load", "loads", "prepare"]
