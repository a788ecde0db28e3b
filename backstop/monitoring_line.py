"""The monitoring line (防止返贫监测线) every service starts from: per-capita net income,
yuan a year, 1.5 × the national poverty line (6000 from 2021), raised by the province each
year. Risk scores against it and assistance guards 帮扶消除 with it, so both take their
defaults from here; each county overrides them through its policy."""

DEFAULT_MONITORING_LINES: dict[int, float] = {
    2021: 6000.0,
    2022: 6600.0,
    2023: 7300.0,
    2024: 7600.0,
    2025: 7800.0,
    2026: 8100.0,
}
