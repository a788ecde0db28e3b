"""Backstop risk: Explainable risk scoring (监测预警) under a versioned policy.

Modules:
- app.py: the service (routes, the registry/datasync consumer, the re-score job, the outbox).
- api.py: HTTP routes: assessments, features, policy, what-if, re-score status.
- domain.py: pure rules: the policy, a household's features, the assessment and its factors.
- models.py: tables and the XPublic schemas.
- features.py: a household's features read back from the read model (locks in id order).
- scoring.py: assess locked households and write what changed, with assessment and alert events.
- reactions.py: what risk does on registry snapshots and datasync records (the batch handler).
- unregistered.py: people not in the register: their costs, flagged at the warning line.
- policies.py: policy versions, the re-score job onto a new one, and the what-if.
"""
