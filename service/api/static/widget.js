/* 知策 widget: paste
 *   <script src="https://zhice.example/widget.js" data-zhice></script>
 * into a page to get a floating "政策问答" button that opens zhice's chat page in an iframe.
 * Optional attributes: data-key="…" (an API key, when zhice requires one),
 * data-collection="…" (a knowledge base other than the default one),
 * data-label="…" (the button text), data-position="left" (default: right).
 * zhice's address is taken from this script's own src, so nothing else is configured.
 */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-zhice]");
  if (!script || !script.src || window.__zhiceWidget) return;
  window.__zhiceWidget = true;

  // https://host/prefix/widget.js (or …/static/widget.js) → https://host/prefix/
  var base = script.src.replace(/[?#].*$/, "").replace(/(static\/)?widget\.js$/, "");
  var origin = new URL(base).origin;
  var key = script.getAttribute("data-key");
  var label = script.getAttribute("data-label") || "政策问答";
  var side = script.getAttribute("data-position") === "left" ? "left" : "right";
  // The key goes in the fragment: browsers never send it to a server or in a Referer.
  var collection = script.getAttribute("data-collection");
  var page =
    base +
    "?embed=1" +
    (collection ? "&collection=" + encodeURIComponent(collection) : "") +
    (key ? "#key=" + encodeURIComponent(key) : "");
  var button, frame, open = false;

  function style(node, rules) {
    for (var name in rules) node.style.setProperty(name, rules[name], "important");
  }

  function build() {
    button = document.createElement("button");
    button.type = "button";
    button.setAttribute("data-zhice-button", "");
    button.setAttribute("aria-expanded", "false");
    button.textContent = label;
    style(button, {
      position: "fixed", bottom: "20px", "z-index": "2147483000", padding: "10px 18px",
      border: "0", "border-radius": "22px", background: "#1d4f91", color: "#fff",
      font: "15px/1.2 'PingFang SC','Microsoft YaHei',sans-serif", cursor: "pointer",
      "box-shadow": "0 4px 14px rgba(0,0,0,.25)",
    });
    button.style.setProperty(side, "20px", "important");
    button.addEventListener("click", function () { toggle(!open); });
    document.body.appendChild(button);
  }

  function toggle(show) {
    if (show && !frame) {
      // The page loads only when first opened, so the host page stays light.
      frame = document.createElement("iframe");
      frame.src = page;
      frame.title = "知策 政策问答";
      frame.setAttribute("data-zhice-frame", "");
      style(frame, {
        position: "fixed", bottom: "76px", width: "400px", height: "600px",
        "max-width": "calc(100vw - 32px)", "max-height": "calc(100vh - 96px)",
        border: "1px solid #c9d2de", "border-radius": "12px", background: "#fff",
        "z-index": "2147483000", "box-shadow": "0 8px 30px rgba(0,0,0,.25)",
      });
      frame.style.setProperty(side, "16px", "important");
      document.body.appendChild(frame);
    }
    open = show;
    if (frame) frame.style.setProperty("display", show ? "block" : "none", "important");
    button.setAttribute("aria-expanded", String(show));
  }

  // The page's × button asks to be closed.
  window.addEventListener("message", function (event) {
    if (event.origin === origin && event.data && event.data.zhice === "close") toggle(false);
  });

  if (document.body) build();
  else document.addEventListener("DOMContentLoaded", build);
})();
