"""fastfa's built-in learning rules, installed as the package ``fastfa_plugins``.

Each module defines one :class:`fastfa.Rule` named ``rule`` and is registered in
``pyproject.toml`` under the entry-point group ``fastfa.rules`` -- exactly the
way a third-party distribution registers its own rules. fastfa itself never
imports this package by name.
"""
