"""Backstop risk: Explainable risk scoring (监测预警) under a versioned policy."""
