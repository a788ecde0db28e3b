"""Backstop assistance.

Verification tasks (入户核实), the identification procedure, visits, assistance plans, funds and supervision.
"""
