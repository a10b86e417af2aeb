"""Study and space files: YAML loaded, checked and resolved into ``StudySpec`` and ``Space``.

Each file's keys are a pydantic schema (``study_schema``, ``space_schema``; ``asha`` and
``samplers`` declare their own keys), published as JSON Schema beside the files (``schema``);
a setting of the trainable is the trainable's own declaration (``trainables.config``). Every
rule is checked when a file loads, and a broken one is one ``ConfigError`` line naming the
file, the key and the rule. Imports no torch (the driver checks files before anything starts).
"""
