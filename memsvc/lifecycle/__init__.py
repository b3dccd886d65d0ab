"""Memory lifecycle: the forgetting curve (`retention`), fidelity tiers (`tiers`) and the DB steps
that apply them. The policy modules are pure functions over plain values; every formula that a
set-based SQL pass must also compute has a `*_sql` twin next to it, so Python and SQL cannot drift.
"""
