"""The live status page of a worker: models, status per signal, open alerts, recent history, health.

:class:`StatusBoard` collects what the engine reports (windows, alerts); the worker serves
``/status`` (the page) and ``/status.json`` (its data). The page polls the JSON every two seconds
and redraws in place, so it updates without a reload and needs nothing from the network.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from tripwire.alerts import SEVERITY_RANK
from tripwire.detectors.registry import family_of_statistic
from tripwire.events import format_ts
from tripwire.statistic_keys import split_statistic

HISTORY = 60  # windows kept per series for the charts
SERIES_PER_MODEL = 16
# The statistics worth a chart: effect sizes, metrics, fairness gaps, latency (not the many quality rates);
# "recall" charts a multi-class model's recall of each class ("class:<class>.recall"); and the
# statistics of the registered detector families (tripwire.detectors.registry).
CHARTED = ("psi", "accuracy", "f1", "roc_auc", "mae", "rmse", "mape", "log_loss", "estimated_accuracy",
           "estimated_f1", "macro_f1", "estimated_macro_f1", "recall", "demographic_parity_difference",
           "disparate_impact_ratio", "latency_p95")


class StatusBoard:
    def __init__(self, worker_id: str) -> None:
        self.worker_id = worker_id
        self.models: dict[str, dict[str, Any]] = {}
        self.health: dict[str, Any] = {}
        self.recent_alerts: deque[dict[str, Any]] = deque(maxlen=50)
        # (model, signal) -> (detector, segment) -> its firing alert: one detector's news must not hide another's
        self._firing: dict[tuple[str, str], dict[tuple[str, str | None], dict[str, Any]]] = {}

    def _model(self, name: str) -> dict[str, Any]:
        return self.models.setdefault(name, {"version": None, "windows": 0, "signals": {}, "history": {},
                                             "last_window_end": None})

    def observe_window(self, window: dict[str, Any]) -> None:
        model = self._model(window["model"])
        model["version"] = window.get("model_version") or model["version"]
        model["windows"] += 1
        model["last_window_end"] = format_ts(window["end"])
        history = model["history"]
        for key, value in window["stats"].items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or key.endswith(".pvalue"):
                continue
            signal, statistic = split_statistic(key)
            model["signals"].setdefault(signal, {"status": "ok", "detector": None, "value": None})
            charted = statistic in CHARTED or family_of_statistic(statistic) is not None
            if not charted or (key not in history and len(history) >= SERIES_PER_MODEL):
                continue
            history.setdefault(key, deque(maxlen=HISTORY)).append(value)

    def observe_alert(self, alert: dict[str, Any]) -> None:
        """A signal shows the worst alert still firing on it, whichever of its detectors raised it."""
        self.recent_alerts.appendleft(alert)
        model = self._model(alert["model"])
        state = model["signals"].setdefault(alert["signal"], {"status": "ok", "detector": None, "value": None})
        firing = self._firing.setdefault((alert["model"], alert["signal"]), {})
        detector = (alert["detector"], alert.get("segment"))
        if alert["status"] == "firing":
            firing[detector] = alert  # an escalation replaces its incident's warning
        else:
            firing.pop(detector, None)
        worst = max(firing.values(), key=lambda a: SEVERITY_RANK[a["severity"]], default=None)
        shown = alert if worst is None else worst
        state.update(status="ok" if worst is None else worst["severity"], detector=shown["detector"],
                     value=shown["value"])

    def snapshot(self, open_alerts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "worker": self.worker_id,
            "health": self.health,
            "open_alerts": open_alerts,
            "recent_alerts": list(self.recent_alerts)[:20],
            "models": {
                name: {**model, "history": {k: list(v) for k, v in model["history"].items()}}
                for name, model in sorted(self.models.items())
            },
        }


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tripwire status</title>
<style>
body{font:14px/1.4 system-ui,sans-serif;margin:1.5rem;color:#1d232a;background:#fafbfc}
h1{font-size:1.3rem;margin:0 0 .3rem} h2{font-size:1.05rem;margin:1.2rem 0 .4rem}
.muted{color:#66707a} table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #e4e7eb;padding:.25rem .5rem;text-align:left;vertical-align:top}
.ok{color:#1a7f37}.warning{color:#b35900;font-weight:600}.critical{color:#c62828;font-weight:700}
.badge{display:inline-block;border-radius:.6rem;padding:0 .5rem;margin:.1rem;background:#eef1f4}
.grid{display:flex;flex-wrap:wrap;gap:.6rem} .chart{background:#fff;border:1px solid #e4e7eb;padding:.3rem;width:230px}
.chart div{font-size:12px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis}
</style></head><body>
<h1>tripwire — live status</h1>
<div class="muted">worker <span id="worker">…</span> · updated <span id="updated">never</span> · <span id="health"></span></div>
<h2>Open alerts (<span id="open-count">0</span>)</h2>
<table id="open-alerts"><thead><tr><th>severity</th><th>kind</th><th>model</th><th>signal</th><th>detector</th><th>since</th><th>message</th></tr></thead><tbody></tbody></table>
<div id="models"></div>
<script>
function esc(s){return String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]))}
function spark(values){
  if(!values.length) return '';
  const w=220,h=40,lo=Math.min(...values),hi=Math.max(...values),span=(hi-lo)||1;
  const pts=values.map((v,i)=>`${(i/(Math.max(values.length-1,1))*w).toFixed(1)},${(h-2-(v-lo)/span*(h-4)).toFixed(1)}`).join(' ');
  return `<svg width="${w}" height="${h}" role="img"><polyline fill="none" stroke="#3b6ea8" stroke-width="1.5" points="${pts}"/></svg>`;
}
async function refresh(){
  try{
    const data=await (await fetch('status.json',{cache:'no-store'})).json();
    document.getElementById('worker').textContent=data.worker;
    document.getElementById('updated').textContent=new Date().toLocaleTimeString();
    const h=data.health||{};
    document.getElementById('health').textContent=Object.entries(h).map(([k,v])=>`${k} ${typeof v==='number'?v.toFixed(1):v}`).join(' · ');
    document.getElementById('open-count').textContent=data.open_alerts.length;
    document.querySelector('#open-alerts tbody').innerHTML=data.open_alerts.map(a=>
      `<tr class="alert-row"><td class="${a.severity}">${a.severity}</td><td>${esc(a.kind)}</td><td>${esc(a.model)}</td><td>${esc(a.signal)}</td><td>${esc(a.detector)}</td><td>${esc(a.ts)}</td><td>${esc(a.message)}</td></tr>`).join('');
    document.getElementById('models').innerHTML=Object.entries(data.models).map(([name,m])=>{
      const signals=Object.entries(m.signals).sort().map(([s,st])=>`<span class="badge ${st.status}" title="${esc(st.detector||'')}">${esc(s)}: ${st.status}</span>`).join('');
      const charts=Object.entries(m.history).map(([k,v])=>`<div class="chart"><div>${esc(k)} = ${v.length?(+v[v.length-1]).toPrecision(3):''}</div>${spark(v)}</div>`).join('');
      return `<section class="model" data-model="${esc(name)}"><h2>${esc(name)} <span class="muted">version ${esc(m.version??'?')} · ${m.windows} windows · last ${esc(m.last_window_end??'-')}</span></h2><div>${signals}</div><div class="grid">${charts}</div></section>`;
    }).join('');
  }catch(e){document.getElementById('updated').textContent='unreachable ('+e+')';}
}
refresh(); setInterval(refresh,2000);
</script></body></html>
"""
