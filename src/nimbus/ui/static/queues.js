// Queues and event sources: each SQS queue's backlog and oldest message, each event
// source mapping's state, backlog and record age, and the async invocation queue.

import { api, fmtAge, fmtCount, h, notice } from "./dom.js";

function table(id, headers, rows, empty) {
  if (!rows.length) return notice(empty);
  return h("table", { class: "grid", id },
    h("thead", {}, h("tr", {}, headers.map(([label, num]) =>
      h("th", { class: num ? "num" : "" }, label)))),
    h("tbody", {}, rows));
}

function tail(arn) {
  return String(arn || "").split(":").slice(-1)[0];
}

export function mount(root, ctx) {
  const sqs = h("section", { class: "card", id: "sqs-queues" });
  const mappings = h("section", { class: "card", id: "event-sources" });
  const asyncQueue = h("section", { class: "card", id: "async-queue" });
  root.append(h("h1", {}, "Queues and event sources"), sqs, mappings, asyncQueue);

  async function refresh() {
    const [queues, esm, queue] = await Promise.all([
      api("/queues"), api("/_nimbus/event-source-mappings"), api("/_nimbus/queue"),
    ]);
    sqs.replaceChildren(h("h2", {}, "SQS queues"), table("queues-table",
      [["Queue"], ["Visible", 1], ["In flight", 1], ["Delayed", 1], ["Oldest message", 1],
       ["Dead-letter queue"]],
      queues.Queues.map((q) => h("tr", { "data-queue": q.QueueName },
        h("td", {}, q.QueueName, q.Fifo ? h("span", { class: "tag" }, "FIFO") : null),
        h("td", { class: "num" + (q.Visible ? " warn" : "") }, fmtCount(q.Visible)),
        h("td", { class: "num" }, fmtCount(q.InFlight)),
        h("td", { class: "num" }, fmtCount(q.Delayed)),
        h("td", { class: "num" }, fmtAge(q.OldestMessageAgeSeconds)),
        h("td", {}, q.RedrivePolicy ? tail(JSON.parse(q.RedrivePolicy).deadLetterTargetArn)
          : "–"))),
      "No SQS queues. Create one with `aws sqs create-queue --endpoint-url <nimbus>`."));

    mappings.replaceChildren(h("h2", {}, "Event source mappings"), table("mappings-table",
      [["Function"], ["Source"], ["State"], ["Backlog", 1], ["Last batch's oldest record", 1],
       ["Received", 1], ["Failed", 1], ["Last error"]],
      esm.EventSourceMappings.map((m) => {
        const st = m.Stats || {};
        const fn = tail(m.FunctionArn);
        return h("tr", { "data-mapping": m.UUID },
          h("td", {}, h("a", { href: ctx.link("function", fn.split(":")[0]) }, fn)),
          h("td", { class: "mono small" }, m.EventSourceArn),
          h("td", {}, h("span", { class: "tag " + (m.State === "Enabled" ? "ok" : "") }, m.State)),
          h("td", { class: "num" }, st.Backlog === null || st.Backlog === undefined ? "–"
            : fmtCount(st.Backlog)),
          h("td", { class: "num" }, st.OldestRecordAgeMs ? fmtAge(st.OldestRecordAgeMs / 1000)
            : "–"),
          h("td", { class: "num" }, fmtCount(st.Received)),
          h("td", { class: "num" }, fmtCount(st.FailedItems)),
          h("td", { class: "small" }, st.LastError || (m.Stats ? "–" : "polled elsewhere")));
      }),
      "No event source mappings. `aws lambda create-event-source-mapping` connects a "
      + "queue or broker to a function."));

    const q = queue.Queue;
    asyncQueue.replaceChildren(h("h2", {}, "Async invocations"), h("table", { class: "grid" },
      h("tbody", {},
        [["Waiting (visible)", fmtCount(q.visible)], ["Running (in flight)", fmtCount(q.in_flight)],
         ["Delayed (retries)", fmtCount(q.delayed)], ["Oldest event", q.depth ? fmtAge(q.oldest_age_ms / 1000) : "–"],
         ...Object.entries(queue.Dispatcher || {}).map(([k, v]) => [k, fmtCount(v)])]
          .map(([k, v]) => h("tr", {}, h("th", {}, k), h("td", { class: "num" }, v))))));
  }

  return { refresh, destroy() {} };
}
