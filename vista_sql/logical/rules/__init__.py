"""Rewrite rules, one per module: small pure functions Plan -> Plan."""
