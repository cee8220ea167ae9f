// Live figures: the overview listens to /live (Server-Sent Events) and
// updates its numbers and chart without a reload.
(function () {
  if (!document.querySelector('[data-live]') || !window.EventSource) return;
  var chart = document.querySelector('[data-chart]');
  var source = new EventSource('/live');
  source.addEventListener('summary', function (e) {
    var s = JSON.parse(e.data);
    document.querySelectorAll('[data-live]').forEach(function (el) {
      var v = s[el.getAttribute('data-live')];
      if (v !== undefined && String(v) !== el.textContent) el.textContent = v;
    });
    if (chart) chart.src = chart.getAttribute('data-chart') + '&t=' + Date.now();
  });
})();
