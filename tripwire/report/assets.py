"""The report page's stylesheet and its few lines of optional JavaScript (expand, collapse, filter)."""

CSS = """
:root{--crit:#c62828;--warn:#d97706;--ok:#2e7d32;--blue:#1f5fbf;--muted:#5b6670;--line:#dfe3e8;--bg:#f6f7f9}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:#1d2329;background:var(--bg)}
header{background:#1d2329;color:#fff;padding:18px 28px}
header h1{margin:0 0 4px;font-size:21px;font-weight:600}
header .facts{margin:0;color:#c9d1d9;font-size:13px}
header .facts b{color:#fff;font-weight:600}
main{padding:16px 28px 40px;max-width:1240px}
h2{font-size:18px;margin:0}
h3{font-size:14px;margin:18px 0 6px;color:#33404d;text-transform:uppercase;letter-spacing:.04em}
section.card{background:#fff;border:1px solid var(--line);border-radius:8px;margin:14px 0;padding:12px 16px}
section.model>details>summary{cursor:pointer;list-style:none;display:flex;gap:12px;align-items:baseline;flex-wrap:wrap}
section.model>details>summary::-webkit-details-marker{display:none}
section.model>details>summary::before{content:"\\25B8";color:var(--muted);transition:transform .15s}
section.model>details[open]>summary::before{transform:rotate(90deg)}
.muted{color:var(--muted)}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:#33404d;background:#fafbfc;position:sticky;top:0}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-size:12px;font-weight:600;background:#e8ecf0;color:#33404d;white-space:nowrap}
.badge.critical{background:#fde7e7;color:var(--crit)}.badge.warning{background:#fdf0dc;color:#a35200}
.badge.resolved,.badge.ok{background:#e5f3e6;color:var(--ok)}.badge.crossed{background:#ece6f6;color:#5b3a91}
.badge.firing{background:#1d2329;color:#fff}
.dot{display:inline-block;width:10px;height:10px;border-radius:50%;background:#c6ced6}
.dot.critical{background:var(--crit)}.dot.warning{background:var(--warn)}.dot.crossed{background:#7e57c2}.dot.ok{background:#9ccc9f}
details.sig{border-bottom:1px solid var(--line)}
details.sig>summary{display:grid;grid-template-columns:14px 16px minmax(200px,1fr) 120px 150px 156px 150px;gap:8px;align-items:center;padding:4px 2px;cursor:pointer;list-style:none}
details.sig>summary::-webkit-details-marker{display:none}
details.sig>summary .caret{color:var(--muted);transition:transform .15s}
details.sig[open]>summary .caret{transform:rotate(90deg)}
details.sig>summary:hover{background:#f3f6fa}
.sighead{display:grid;grid-template-columns:14px 16px minmax(200px,1fr) 120px 150px 156px 150px;gap:8px;padding:2px;font-size:12px;color:var(--muted);border-bottom:1px solid var(--line)}
.signame{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.group{font-size:11px;color:var(--muted);font-family:system-ui,sans-serif;margin-left:6px}
.ratio{display:flex;align-items:center;gap:6px;font-variant-numeric:tabular-nums}
.bar{position:relative;display:inline-block;width:64px;height:8px;background:#eef1f4;border-radius:4px;overflow:hidden}
.bar .fill{position:absolute;left:0;top:0;bottom:0}.bar .fill.ok{background:#9ccc9f}.bar .fill.warning{background:var(--warn)}.bar .fill.critical{background:var(--crit)}
.bar .one{position:absolute;left:33.3%;top:0;bottom:0;width:1px;background:#1d2329}
.sigbody{padding:4px 0 10px 38px}
.note{font-size:12px;color:var(--muted);margin:2px 0 6px}
svg.chart{width:100%;max-width:860px;height:auto;display:block}
svg.spark{width:150px;height:28px;display:block}
svg.hist{width:100%;max-width:860px;height:auto;display:block}
svg text{font:11px system-ui,sans-serif;fill:#4a5560}
svg .tick{fill:#5b6670}
svg .grid{stroke:#e3e7ec;stroke-width:1}
svg .axis,svg .xtick{stroke:#9aa5b1;stroke-width:1}
svg .line{fill:none;stroke:var(--blue);stroke-width:1.6;stroke-linejoin:round}
svg.spark .line{stroke-width:1.2}
svg .limit{stroke-dasharray:5 4;stroke-width:1.2}
svg .limit.warning{stroke:var(--warn)}svg .limit.critical{stroke:var(--crit)}
svg.spark .limit{stroke-dasharray:3 3;opacity:.8}
svg .baseline{stroke:#6b7785;stroke-dasharray:1 3;stroke-width:1.5}
svg .lim.warning{fill:#a35200}svg .lim.critical{fill:var(--crit)}
svg .pt{stroke:#fff;stroke-width:1}
svg .pt.ok{fill:var(--blue)}svg .pt.warning{fill:var(--warn)}svg .pt.critical{fill:var(--crit)}
svg .band.warning{fill:#fdf0dc;opacity:.8}svg .band.critical{fill:#fde7e7;opacity:.9}
svg .marker.warning{fill:var(--warn)}svg .marker.critical{fill:var(--crit)}svg .marker.resolved{fill:var(--ok)}
svg .ref{fill:#b8c1cb}svg .cur{fill:var(--blue)}svg .cur.warning{fill:var(--warn)}svg .cur.critical{fill:var(--crit)}
figure.dist{margin:10px 0 18px}
figure.dist figcaption{font-size:13px;margin-bottom:4px}
.grid2{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:6px 18px}
.grid2 .panel h4{margin:8px 0 2px;font-size:13px;font-family:ui-monospace,Menlo,Consolas,monospace;font-weight:500}
.flat{font-size:12px;color:var(--muted);margin:8px 0}
.flat code{font-size:12px}
details.quiet>summary,details.sub>summary{cursor:pointer;color:#33404d;padding:6px 0;font-weight:600}
.legend{font-size:12px;color:var(--muted);margin:8px 0 0}
.legend svg{vertical-align:middle}
.tools{display:none;gap:8px;margin-top:10px}
.js .tools{display:flex}
.tools button,.tools input{font:inherit;font-size:13px;padding:3px 10px;border-radius:5px;border:1px solid #5b6670;background:#2b333b;color:#fff}
.tools input{background:#fff;color:#1d2329;min-width:260px}
.scroll{overflow-x:auto}
#alerts td{font-size:12.5px}
#alerts td.ts,#alerts td:nth-child(3){white-space:nowrap}
#alerts td.det{word-break:break-word;max-width:170px}
#alerts td.msg{min-width:300px}
#alerts tr:target{background:#fff7d6}
[hidden]{display:none!important}
@media print{.tools{display:none!important}}
"""

JS = """
(function(){
  var root=document.documentElement;root.classList.add('js');
  function openTo(el){for(;el;el=el.parentElement){if(el.tagName==='DETAILS'){el.open=true;}}}
  function onHash(){var id=decodeURIComponent(location.hash.slice(1));var el=id&&document.getElementById(id);
    if(el){openTo(el);el.scrollIntoView({block:'center'});}}
  window.addEventListener('hashchange',onHash);onHash();
  function all(open){document.querySelectorAll('details').forEach(function(d){d.open=open||d.classList.contains('keep');});}
  document.getElementById('expand').addEventListener('click',function(){all(true);});
  document.getElementById('collapse').addEventListener('click',function(){all(false);});
  var box=document.getElementById('filter');
  box.addEventListener('input',function(){var q=box.value.trim().toLowerCase();
    document.querySelectorAll('[data-search]').forEach(function(el){
      var hit=!q||el.getAttribute('data-search').indexOf(q)>=0;el.hidden=!hit;if(q&&hit){openTo(el.parentElement);}});});
  root.setAttribute('data-ready','1');
})();
"""

