// The dashboard's only script: confirmed actions, forms that post JSON, live refresh.
// No inline script exists (the Content-Security-Policy forbids it); values shown are
// set with textContent, never as HTML.
(function () {
  "use strict";
  var ROOT = "/dashboard";
  var REFRESH_MS = 2000;
  var timer = null;

  function post(url, body) {
    return fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-Dashboard-Action": "1" },
      body: JSON.stringify(body || {}),
    }).then(function (response) {
      return response.text().then(function (text) {
        var parsed = null;
        try { parsed = JSON.parse(text); } catch (e) { parsed = null; }
        if (!response.ok) {
          throw new Error((parsed && parsed.Message) || text || String(response.status));
        }
        return parsed;
      });
    });
  }

  function say(text, failed) {
    var out = document.querySelector("#content .result");
    if (out) {
      out.textContent = text;
      out.className = failed ? "result error" : "result";
    }
  }

  function json(text, what) {
    try { return { ok: true, value: JSON.parse(text || "null") }; }
    catch (e) { say(what + " is not JSON: " + e.message, true); return { ok: false }; }
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button.action");
    if (!button) return;
    var action = button.dataset.action, id = button.dataset.instance;
    if (!window.confirm(action + " instance " + id + "?")) return;
    post(ROOT + "/api/instances/" + action + "?id=" + encodeURIComponent(id), {})
      .then(function (answer) {
        if (action === "restart" && answer && answer.id) {
          window.location.href = ROOT + "/instances/" + encodeURIComponent(answer.id);
        } else if (action === "purge") {
          window.location.href = ROOT + "/instances";
        } else {
          say(action + ": done", false);
          refresh();
        }
      })
      .catch(function (e) { say(action + " failed: " + e.message, true); });
  });

  document.addEventListener("submit", function (event) {
    var form = event.target, data;
    if (form.classList.contains("raise-event")) {
      event.preventDefault();
      data = json(form.elements.data.value, "the data");
      var name = form.elements.event.value;
      if (!data.ok || !window.confirm("raise event " + name + "?")) return;
      post(ROOT + "/api/instances/raiseEvent?id=" + encodeURIComponent(form.dataset.instance),
           { event: name, data: data.value })
        .then(function () { form.reset(); say("event " + name + " raised", false); refresh(); })
        .catch(function (e) { say("raise failed: " + e.message, true); });
    } else if (form.classList.contains("signal")) {
      event.preventDefault();
      data = json(form.elements.input.value, "the input");
      var op = form.elements.operation.value;
      if (!data.ok || !window.confirm("signal " + op + "?")) return;
      var query = "?name=" + encodeURIComponent(form.dataset.name) +
                  "&key=" + encodeURIComponent(form.dataset.key);
      post(ROOT + "/api/entities/signal" + query, { operation: op, input: data.value })
        .then(function () { form.reset(); say("signalled " + op, false); })
        .catch(function (e) { say("signal failed: " + e.message, true); });
    }
  });

  function refresh() {
    var main = document.getElementById("content");
    if (!main) return;
    if (typing(main)) {
      schedule();  // a form holds what someone typed: the next round
      return;
    }
    fetch(window.location.href, {
      credentials: "same-origin",
      headers: { "X-Dashboard-Partial": "1" },
    })
      .then(function (response) {
        if (response.status === 401 || response.status === 404) {
          say("this page is gone (" + response.status + "): reload it", true);
          return undefined;  // signed out, or purged elsewhere: stop polling
        }
        return response.ok ? response.text() : null;
      })
      .then(function (html) {
        if (html === undefined) return;
        if (html === null) { schedule(); return; }
        var kept = main.querySelector(".result");
        var note = kept ? kept.textContent : "";
        var holder = document.createElement("div");
        holder.innerHTML = html;  // the server's page, escaped there
        var fresh = holder.firstElementChild;
        if (fresh) {
          main.replaceWith(fresh);
          var again = fresh.querySelector(".result");
          if (again && note) again.textContent = note;
        }
        schedule();
      })
      .catch(function () { schedule(); });
  }

  function typing(main) {
    var active = document.activeElement;
    if (active && main.contains(active) && active.tagName === "INPUT") return true;
    var fields = main.querySelectorAll("form input");
    for (var i = 0; i < fields.length; i++) {
      if (fields[i].value !== fields[i].defaultValue) return true;
    }
    return false;
  }

  function schedule() {
    window.clearTimeout(timer);
    var main = document.getElementById("content");
    if (main && main.dataset.live === "1") timer = window.setTimeout(refresh, REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", schedule);
})();
