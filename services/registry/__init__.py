"""Backstop registry.

The household register (建档立卡): households, members, regions, incomes, guarantees, key contacts and monitoring status.
"""
