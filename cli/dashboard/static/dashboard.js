// Draws each table's chart with Chart.js. The data sits in a JSON <script> next to the canvas (the page
// allows no inline script); the table under it stays the exact, accessible copy of the same numbers.
(function () {
  "use strict";
  // Okabe-Ito: told apart with the common colour-vision deficiencies.
  var PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000",
                 "#999999", "#882255"];
  function draw(canvas) {
    var data = JSON.parse(document.getElementById(canvas.dataset.chart).textContent);
    var box = canvas.parentElement;
    if (data.horizontal) {
      box.style.height = Math.max(160, 26 * data.labels.length * data.datasets.length + 60) + "px";
    }
    data.datasets.forEach(function (d, i) { d.backgroundColor = PALETTE[i % PALETTE.length]; });
    var value = data.horizontal ? "x" : "y", cat = data.horizontal ? "y" : "x";
    var scales = {};
    scales[cat] = {stacked: data.stacked, ticks: {color: "#1b1f24"}};
    scales[value] = {stacked: data.stacked, beginAtZero: true, ticks: {color: "#1b1f24"}};
    new Chart(canvas, {
      type: "bar",
      data: {labels: data.labels, datasets: data.datasets},
      options: {indexAxis: cat, maintainAspectRatio: false, animation: false, scales: scales,
                plugins: {legend: {position: "bottom", labels: {color: "#1b1f24"}}}}
    });
    canvas.dataset.drawn = "1";
  }
  document.querySelectorAll("canvas[data-chart]").forEach(draw);
})();
