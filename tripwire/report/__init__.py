"""The backtest report: one self-contained HTML page from a replay's windows and alerts.

``tripwire replay EVENTS --config monitor.toml --out alerts.jsonl --report report.html`` and
``tripwire demo --report report.html`` write it. Everything is inline (CSS, a few lines of
optional JS, SVG drawn here), so the file opens offline and can be attached to a ticket.
Rendering is pure: windows, alerts, config and references in, a string out, the same bytes for
the same inputs (no clock, no randomness).

Per model, worst first:

- every statistic that has a threshold, ranked by the largest value / threshold ratio it reached
  (on the scale the alert policy compares), each with a sparkline; expanding a row shows its
  timeline with the warning and critical lines, the windows that crossed them, the alerts
  (markers link to the alert table) and the firing periods shaded;
- the performance, estimated-performance and fairness series, drawn on their own scale with the
  baseline, and the thresholds converted to that scale;
- for each drifted feature (and the prediction / score), the reference histogram beside the
  histogram of the window where the drift was worst, on the bins the detector uses;
- the statistics without a threshold (latency p50, throughput, label lag, ...).

Then one table of every alert. Signals that stayed at zero in every window are listed by name
only, so a model with 50 features stays a page, not a book.
The package: :mod:`~tripwire.report.data` (the series model), :mod:`~tripwire.report.draw` (SVG),
:mod:`~tripwire.report.page` (HTML) with :mod:`~tripwire.report.assets` (CSS, JS) and
:mod:`~tripwire.report.text` (number and time formatting).
"""

from tripwire.report.data import Series, WindowLog, build_series, ratio
from tripwire.report.page import render_report
from tripwire.statistic_keys import split_statistic

__all__ = ["Series", "WindowLog", "build_series", "ratio", "render_report", "split_statistic"]
