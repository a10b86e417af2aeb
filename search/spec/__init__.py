"""Study and space files: YAML loaded, checked and resolved into ``StudySpec`` and ``Space``.

Every rule is checked when a file loads, and a broken one is one ``ConfigError`` line naming the
file, the key and the rule. Imports no torch (the driver checks files before anything starts).
"""
