/* emofuse: progress without reloading, windows that seek the player, forms sent once.
   No framework and nothing inline: the site's content policy allows this file only. */
(function () {
  "use strict";

  var FINISHED = { done: true, failed: true };

  /* An element with data-poll follows its analysis: stage and percentage every second, and its
     results (data-fragment, into data-target or itself) fetched again whenever the status's
     version changes: when the timeline appears, when the video is written, when it ends. */
  function follow(box) {
    var version = box.getAttribute("data-version");
    var target = document.getElementById(box.getAttribute("data-target") || "") || box;
    function show(status) {
      var bar = box.querySelector("[data-bar]"), stage = box.querySelector("[data-stage]"), percent = box.querySelector("[data-percent]");
      if (bar) { bar.value = status.percent; }
      if (percent) { percent.textContent = status.percent + " %"; }
      if (stage && status.stage_label) { stage.textContent = status.stage_label; }
    }
    function tick() {
      fetch(box.getAttribute("data-poll"), { credentials: "same-origin", headers: { Accept: "application/json" }, cache: "no-store" })
        .then(function (response) {
          if (!response.ok) { throw new Error("status " + response.status); }
          return response.json();
        })
        .then(function (status) {
          show(status);
          var finished = FINISHED[status.status] === true;
          if (status.version === version) { return finished; }
          version = status.version;
          return fetch(box.getAttribute("data-fragment"), { credentials: "same-origin", cache: "no-store" })
            .then(function (response) { return response.text(); })
            .then(function (html) {
              target.innerHTML = html;
              if (finished && target !== box) { box.hidden = true; }
              return finished;
            });
        })
        .then(function (finished) { if (!finished) { window.setTimeout(tick, 1000); } })
        .catch(function () { window.setTimeout(tick, 4000); });  // the network or the server away: try again, slower
    }
    window.setTimeout(tick, 700);
  }

  function seek(event) {
    var cell = event.target.closest ? event.target.closest("[data-seek]") : null;
    var player = document.getElementById("player");
    if (!cell || !player) { return; }
    event.preventDefault();
    player.currentTime = parseFloat(cell.getAttribute("data-seek"));
    player.focus();
  }

  /* The window playing now is marked in the list (aria-current), as the player moves. */
  function mark(event) {
    if (event.target.id !== "player") { return; }
    var now = event.target.currentTime;
    document.querySelectorAll("button[data-seek]").forEach(function (button) {
      var playing = now >= parseFloat(button.getAttribute("data-seek")) && now < parseFloat(button.getAttribute("data-end"));
      if (playing) { button.setAttribute("aria-current", "true"); } else { button.removeAttribute("aria-current"); }
    });
  }

  function once(event) {
    var form = event.target;
    var question = form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) { event.preventDefault(); return; }
    if (!form.hasAttribute("data-once")) { return; }
    if (form.hasAttribute("data-sent")) { event.preventDefault(); return; }  // a second click while the upload runs
    form.setAttribute("data-sent", "");
    var button = form.querySelector("button[type=submit]"), note = form.querySelector("[data-sending]");
    if (button) { button.disabled = true; button.textContent = "Uploading…"; }
    if (note) { note.hidden = false; }
  }

  document.addEventListener("click", seek);
  document.addEventListener("keydown", function (event) {
    if ((event.key === "Enter" || event.key === " ") && event.target.matches && event.target.matches("rect[data-seek]")) { seek(event); }
  });
  document.addEventListener("timeupdate", mark, true);  // media events do not bubble: caught on the way down
  document.addEventListener("submit", once);
  document.querySelectorAll("[data-poll]").forEach(function (box) {
    if (!box.hidden && !box.hasAttribute("data-finished")) { follow(box); }
  });
}());
