// 知策 chat page: asks zhice, shows the answer as it streams, opens citations in context.
// Plain browser JavaScript, no build step. Every URL is relative to the page, so the page
// also works when zhice is served under a path prefix.
(() => {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const log = $("log");
  const form = $("ask");
  const input = $("question");
  const send = $("send");
  const MAX_HISTORY = 10; // earlier messages sent along with a question
  const MAX_ANSWER = 8000; // what POST /feedback accepts
  const REQUEST_ID = /^[A-Za-z0-9._:+/=-]{1,128}$/;
  const REFUSAL = "知识库中没有找到";
  const conversation = []; // earlier turns, for follow-up questions
  const documents = new Map(); // source → Promise of the document (with .chars)
  let streaming = null; // null: not tried yet; false: this zhice has no chat endpoint

  // An API key arrives in the fragment (#key=…), never in the query string, so it stays
  // out of server logs; it is kept for this tab only and removed from the address bar.
  const fragment = new URLSearchParams(location.hash.slice(1));
  if (fragment.has("key")) {
    sessionStorage.setItem("zhice-key", fragment.get("key"));
    window.history.replaceState(null, "", location.pathname + location.search);
  }
  const apiKey = sessionStorage.getItem("zhice-key");

  // ?collection=industry asks that knowledge base instead of the default one.
  const asked = new URLSearchParams(location.search).get("collection") || "";
  const collection = /^[a-z0-9][a-z0-9_-]{0,39}$/.test(asked) ? asked : null;
  const inCollection = collection ? `?collection=${encodeURIComponent(collection)}` : "";

  if (new URLSearchParams(location.search).has("embed")) {
    document.body.classList.add("embedded");
    $("close").hidden = false;
    $("close").addEventListener("click", () => window.parent.postMessage({ zhice: "close" }, "*"));
  }

  function headers() {
    const h = { "Content-Type": "application/json", Accept: "application/json, text/event-stream" };
    if (apiKey) h.Authorization = `Bearer ${apiKey}`;
    if (collection) h["X-Zhice-Collection"] = collection;
    return h;
  }

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function scrollDown() {
    log.scrollTop = log.scrollHeight;
  }

  class ApiError extends Error {}

  async function apiError(response) {
    let code = "";
    let message = `HTTP ${response.status}`;
    try {
      const body = await response.json();
      code = body.error.code;
      message = body.error.message;
    } catch (_) {
      // not the JSON error shape (a proxy's page): keep the status
    }
    const friendly = {
      401: "需要有效的 API 密钥（嵌入代码的 data-key）。",
      429: "提问太频繁了，请稍后再试。",
      503: "服务正在启动或暂不可用，请稍后再试。",
    }[response.status];
    return new ApiError(friendly ? `${friendly}（${code || message}）` : message);
  }

  // --- asking ------------------------------------------------------------------------

  function addTurn(question) {
    const user = el("div", "msg user");
    user.append(el("div", "bubble", question));
    const bot = el("div", "msg bot pending");
    const bubble = el("div", "bubble");
    const answer = el("div", "answer", "");
    answer.setAttribute("aria-busy", "true");
    bubble.append(answer);
    bot.append(bubble);
    log.append(user, bot);
    scrollDown();
    return { question, el: bot, bubble, answer };
  }

  async function askStreaming(question, turn) {
    const messages = conversation.slice(-MAX_HISTORY).concat([{ role: "user", content: question }]);
    const response = await fetch("v1/chat/completions", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({ model: "zhice", stream: true, messages }),
    });
    if (response.status === 404 || response.status === 405) return null;
    if (!response.ok) throw await apiError(response);
    streaming = true;
    const result = {
      answer: "",
      citations: [],
      refused: null,
      intent: null,
      requestId: response.headers.get("X-Request-ID"),
    };
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer = (buffer + value).replace(/\r\n?/g, "\n");
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        if (onEvent(event, result, turn)) return result;
      }
    }
    onEvent(buffer, result, turn);
    return result;
  }

  // One Server-Sent Event; true once the stream says [DONE].
  function onEvent(event, result, turn) {
    const data = event
      .split("\n")
      .filter((line) => line.startsWith("data:"))
      .map((line) => line.slice(5).replace(/^ /, ""))
      .join("\n");
    if (!data) return false;
    if (data === "[DONE]") return true;
    const chunk = JSON.parse(data);
    if (chunk.error) throw new ApiError(chunk.error.message || "stream error");
    const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
    if (delta && delta.content) {
      result.answer += delta.content;
      turn.answer.textContent = result.answer;
      scrollDown();
    }
    if (Array.isArray(chunk.citations)) result.citations = chunk.citations;
    if (chunk.zhice) {
      if (typeof chunk.zhice.refused === "boolean") result.refused = chunk.zhice.refused;
      if (chunk.zhice.intent) result.intent = chunk.zhice.intent;
    }
    return false;
  }

  async function askOnce(question) {
    const response = await fetch("ask", {
      method: "POST",
      headers: headers(),
      body: JSON.stringify({
        question,
        history: conversation.slice(-MAX_HISTORY),
        ...(collection ? { collection } : {}),
      }),
    });
    if (!response.ok) throw await apiError(response);
    const body = await response.json();
    return {
      answer: body.answer,
      citations: body.citations,
      refused: body.refused,
      intent: body.intent,
      requestId: response.headers.get("X-Request-ID"),
    };
  }

  async function ask(question) {
    const turn = addTurn(question);
    setBusy(true);
    try {
      let result = null;
      if (streaming !== false) {
        result = await askStreaming(question, turn);
        if (result === null) streaming = false;
      }
      if (result === null) result = await askOnce(question);
      document.body.dataset.mode = streaming ? "stream" : "ask"; // which API answered
      if (result.refused === null) {
        // A stream without the zhice extension: recognise the refusal by its wording.
        result.refused = result.citations.length === 0 && result.answer.startsWith(REFUSAL);
      }
      finish(turn, result);
      const reply = result.answer.slice(0, MAX_ANSWER);
      conversation.push({ role: "user", content: question }, { role: "assistant", content: reply });
    } catch (error) {
      turn.el.classList.add("error");
      turn.answer.textContent = `出错了：${error instanceof ApiError ? error.message : "无法连接服务，请稍后再试。"}`;
    } finally {
      turn.el.classList.remove("pending");
      turn.answer.removeAttribute("aria-busy");
      setBusy(false);
      scrollDown();
    }
  }

  function setBusy(busy) {
    send.disabled = busy;
    form.classList.toggle("busy", busy);
  }

  // --- rendering an answer -------------------------------------------------------------

  function finish(turn, result) {
    turn.el.classList.toggle("refused", result.refused);
    turn.el.dataset.intent = result.intent || "";
    renderAnswer(turn.answer, result.answer, result.citations);
    if (result.refused) {
      turn.bubble.prepend(el("div", "refusal-label", "知识库中没有找到"));
      turn.answer.after(el("p", "refusal-hint", "可以换个说法再问，或咨询人工客服。"));
    }
    if (result.citations.length) turn.bubble.append(sourceList(result.citations));
    turn.bubble.append(ratingButtons(turn.question, result));
  }

  // Text with its [n] markers turned into buttons, for the n that have a citation.
  function renderAnswer(node, text, citations) {
    const byId = new Map(citations.map((c) => [c.id, c]));
    node.textContent = "";
    let last = 0;
    for (const match of text.matchAll(/\[(\d+)\]/g)) {
      const citation = byId.get(Number(match[1]));
      if (!citation) continue;
      node.append(text.slice(last, match.index), citeButton(citation));
      last = match.index + match[0].length;
    }
    node.append(text.slice(last));
  }

  function citeButton(citation) {
    const button = el("button", "cite", `[${citation.id}]`);
    button.type = "button";
    button.dataset.cite = String(citation.id);
    button.dataset.source = citation.source;
    button.dataset.start = String(citation.start);
    button.dataset.end = String(citation.end);
    button.title = `查看出处：${citation.title}`;
    button.setAttribute("aria-label", `查看出处 ${citation.id}：${citation.title}`);
    button.addEventListener("click", () => openCitation(citation, button));
    return button;
  }

  function sourceList(citations) {
    const list = el("ol", "sources");
    list.setAttribute("aria-label", "出处");
    for (const citation of citations) {
      const item = el("li");
      const button = el("button", "source", `[${citation.id}] ${citation.title}`);
      button.type = "button";
      button.addEventListener("click", () => openCitation(citation, button));
      item.append(button);
      list.append(item);
    }
    return list;
  }

  // --- feedback ------------------------------------------------------------------------

  const THUMB =
    "M2 21h4V9H2v12zm20-11a2 2 0 0 0-2-2h-6.3l1-4.6v-.3c0-.4-.2-.8-.4-1.1L13.2 1 6.6 7.6" +
    "C6.2 7.9 6 8.4 6 9v10a2 2 0 0 0 2 2h9c.8 0 1.5-.5 1.8-1.2l3-7.1c.1-.2.2-.5.2-.7v-2z";

  function thumb(down) {
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("aria-hidden", "true");
    if (down) svg.setAttribute("transform", "rotate(180)");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", THUMB);
    svg.append(path);
    return svg;
  }

  function ratingButtons(question, result) {
    const box = el("div", "rate");
    const note = el("span", "rate-note", "这个回答有帮助吗？");
    const buttons = [
      ["up", "有用", "👍 有帮助"],
      ["down", "没用", "👎 没有帮助"],
    ].map(([rating, label, aria]) => {
      const button = el("button", `rate-${rating}`);
      button.type = "button";
      button.dataset.rating = rating;
      button.setAttribute("aria-label", aria);
      button.append(thumb(rating === "down"), label);
      button.addEventListener("click", () => rate(rating, button));
      return button;
    });

    async function rate(rating, chosen) {
      buttons.forEach((b) => (b.disabled = true));
      const body = { question, answer: result.answer.slice(0, MAX_ANSWER) || "(空)", rating };
      if (result.requestId && REQUEST_ID.test(result.requestId)) body.request_id = result.requestId;
      try {
        const response = await fetch("feedback", {
          method: "POST",
          headers: headers(),
          body: JSON.stringify(body),
        });
        if (!response.ok) throw await apiError(response);
        chosen.classList.add("chosen");
        chosen.setAttribute("aria-pressed", "true");
        note.textContent = "感谢您的反馈！";
        box.dataset.recorded = rating;
      } catch (error) {
        buttons.forEach((b) => (b.disabled = false));
        note.textContent = "反馈未能提交，请重试。";
      }
    }

    box.append(note, ...buttons);
    return box;
  }

  // --- a citation in its document ------------------------------------------------------

  const panel = $("doc");
  const docText = $("doc-text");

  function loadDocument(source) {
    if (!documents.has(source)) {
      const promise = fetch(`documents/${encodeURIComponent(source)}${inCollection}`, {
        headers: headers(),
      })
        .then(async (response) => {
          if (!response.ok) throw await apiError(response);
          const doc = await response.json();
          // zhice's offsets count code points; JavaScript strings count UTF-16 units.
          doc.chars = Array.from(doc.text);
          return doc;
        });
      promise.catch(() => documents.delete(source)); // let a later click retry
      documents.set(source, promise);
    }
    return documents.get(source);
  }

  // The text before, of and after the cited span (falling back to a search for the quote).
  function split(doc, citation) {
    const chars = doc.chars;
    const quote = chars.slice(citation.start, citation.end).join("");
    if (quote === citation.quote) {
      return [chars.slice(0, citation.start).join(""), quote, chars.slice(citation.end).join("")];
    }
    const at = doc.text.indexOf(citation.quote);
    if (at < 0) return [doc.text, "", ""];
    const end = at + citation.quote.length;
    return [doc.text.slice(0, at), citation.quote, doc.text.slice(end)];
  }

  async function openCitation(citation, button) {
    document.querySelectorAll(".cite.active").forEach((b) => b.classList.remove("active"));
    if (button.classList.contains("cite")) button.classList.add("active");
    panel.hidden = false;
    $("doc-title").textContent = citation.title || citation.source;
    $("doc-meta").textContent = "正在载入原文…";
    docText.textContent = "";
    if (citation.source.startsWith("faq:")) {
      // A curated FAQ answer has no document: its quote is the whole entry.
      docText.replaceChildren(el("mark", "", citation.quote));
      $("doc-meta").textContent = `[${citation.id}] 常见问题（${citation.source.slice(4)}）`;
      return;
    }
    try {
      const doc = await loadDocument(citation.source);
      const [before, quote, after] = split(doc, citation);
      const mark = el("mark", "", quote);
      mark.id = "cited";
      docText.replaceChildren(before, mark, after);
      $("doc-meta").textContent = `[${citation.id}] ${doc.source}，第 ${citation.start + 1}–${citation.end} 字`;
      mark.scrollIntoView({ block: "center" });
    } catch (error) {
      $("doc-meta").textContent = `原文载入失败：${error.message}`;
    }
  }

  $("doc-close").addEventListener("click", () => {
    panel.hidden = true;
    document.querySelectorAll(".cite.active").forEach((b) => b.classList.remove("active"));
  });
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !panel.hidden) $("doc-close").click();
  });

  // --- the form ------------------------------------------------------------------------

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const question = input.value.trim();
    if (!question || send.disabled) return;
    input.value = "";
    ask(question);
  });
  input.addEventListener("keydown", (event) => {
    // Enter sends, unless an input method is composing Chinese (Enter picks the word).
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing && event.keyCode !== 229) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  document.querySelectorAll(".example").forEach((button) =>
    button.addEventListener("click", () => {
      input.value = button.textContent;
      form.requestSubmit();
    }),
  );
  input.focus();
})();
