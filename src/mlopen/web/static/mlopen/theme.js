/* The colour theme, set before the page is drawn (loaded in <head>, not deferred): no light flash
 * on a dark system. The reader's choice (light, dark or the system's) is kept in localStorage;
 * with none, the page follows prefers-color-scheme, also when the system switches. */
(function () {
  "use strict";
  var KEY = "mlopen-theme";
  var media = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;

  function stored() {
    try {
      var value = window.localStorage.getItem(KEY);
      return value === "light" || value === "dark" ? value : null;
    } catch (err) {
      return null;  // storage disabled: follow the system
    }
  }

  function effective() {
    return stored() || (media && media.matches ? "dark" : "light");
  }

  function apply() {
    var theme = effective();
    document.documentElement.setAttribute("data-bs-theme", theme);
    document.querySelectorAll("[data-theme-choice]").forEach(function (item) {
      var active = item.getAttribute("data-theme-choice") === (stored() || "auto");
      item.classList.toggle("active", active);
      item.setAttribute("aria-pressed", active ? "true" : "false");
    });
    document.querySelectorAll("[data-theme-icon]").forEach(function (icon) {
      icon.className = theme === "dark" ? "bi bi-moon-stars-fill" : "bi bi-sun-fill";
    });
    document.dispatchEvent(new CustomEvent("mlopen:theme", { detail: { theme: theme } }));
  }

  apply();
  if (media && media.addEventListener) {
    media.addEventListener("change", apply);
  }
  document.addEventListener("DOMContentLoaded", apply);
  document.addEventListener("click", function (event) {
    var item = event.target.closest && event.target.closest("[data-theme-choice]");
    if (!item) { return; }
    var choice = item.getAttribute("data-theme-choice");
    try {
      if (choice === "auto") {
        window.localStorage.removeItem(KEY);
      } else {
        window.localStorage.setItem(KEY, choice);
      }
    } catch (err) { /* storage disabled: the choice lasts for this page only */ }
    if (choice !== "auto") {
      document.documentElement.setAttribute("data-bs-theme", choice);
    }
    apply();
  });
})();
