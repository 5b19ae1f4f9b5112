// Plays the time-lapse in the page: play/pause, a scrubber, arrow keys, preloading.
// Without this script the Back/Next links step through the frames on the server.
"use strict";
(function () {
  var box = document.querySelector(".timelapse");
  if (!box) return;
  var frames = JSON.parse(box.getAttribute("data-frames") || "[]");
  var src = box.getAttribute("data-src");
  var index = parseInt(box.getAttribute("data-index"), 10) || 0;
  var img = document.getElementById("frame");
  var label = document.getElementById("frame-label");
  var number = document.getElementById("frame-number");
  var play = document.getElementById("play");
  var scrub = document.getElementById("scrub");
  var prev = document.getElementById("prev");
  var next = document.getElementById("next");
  var timer = null;
  var cache = {};
  var FRAME_MS = 250;

  function url(i) { return src.replace("{seq}", String(frames[i][0])); }

  function preload(i) {
    for (var k = i; k < Math.min(i + 4, frames.length); k++) {
      if (!cache[k]) { cache[k] = new Image(); cache[k].src = url(k); }
    }
  }

  function show(i) {
    index = (i + frames.length) % frames.length;
    img.src = url(index);
    img.alt = "Time-lapse frame " + (index + 1) + " of " + frames.length;
    label.textContent = frames[index][1];
    number.textContent = String(index + 1);
    scrub.value = String(index);
    preload(index + 1);
  }

  function stop() {
    if (timer !== null) { clearInterval(timer); timer = null; }
    play.textContent = "Play";
  }

  function start() {
    if (index >= frames.length - 1) show(0);
    timer = setInterval(function () {
      if (index >= frames.length - 1) { stop(); return; }
      show(index + 1);
    }, FRAME_MS);
    play.textContent = "Pause";
  }

  if (frames.length < 2) return;
  play.hidden = false;
  scrub.hidden = false;
  play.addEventListener("click", function () { if (timer === null) start(); else stop(); });
  scrub.addEventListener("input", function () { stop(); show(parseInt(scrub.value, 10)); });
  prev.addEventListener("click", function (e) { e.preventDefault(); stop(); show(index - 1); });
  next.addEventListener("click", function (e) { e.preventDefault(); stop(); show(index + 1); });
  document.addEventListener("keydown", function (e) {
    if (e.key === "ArrowLeft") { stop(); show(index - 1); }
    else if (e.key === "ArrowRight") { stop(); show(index + 1); }
    else if (e.key === " " && e.target === document.body) {
      e.preventDefault();
      if (timer === null) start(); else stop();
    }
  });
  preload(0);
})();
