// cairn web UI: uploads (file picker and drag and drop), resumable after a dropped connection
// or a reload. The page works without this script except for uploading.
"use strict";
(function () {
  const box = document.getElementById("upload");
  if (!box) return;
  // A folder view sends to the folder; an upload-only link's page names its own endpoint
  // and stays on the page (it cannot show what arrived).
  const folder = box.dataset.folder || "", dir = box.dataset.dir, csrf = box.dataset.csrf;
  const list = document.getElementById("upload-progress");
  const base = box.dataset.base || "/ui/f/" + encodeURIComponent(folder) + "/uploads";
  const stay = !!box.dataset.stay;
  const PART = 4 * 1024 * 1024;

  async function call(method, url, body, type) {
    const headers = { "x-cairn-csrf": csrf };
    if (type) headers["content-type"] = type;
    const r = await fetch(url, { method, body, headers, credentials: "same-origin" });
    const text = await r.text();
    let data = {};
    try { data = text ? JSON.parse(text) : {}; } catch (e) { data = { error: text }; }
    if (!r.ok) {
      const err = new Error(data.error || r.statusText);
      err.status = r.status;
      throw err;
    }
    return data;
  }

  // A transient failure (the network, a busy upload) is retried with a growing pause.
  async function retrying(what) {
    for (let i = 0; ; i++) {
      try { return await what(); } catch (e) {
        const transient = !e.status || e.status === 409 || e.status >= 500 && e.status !== 507;
        if (!transient || i >= 6) throw e;
        await new Promise(ok => setTimeout(ok, 500 * 2 ** i));
      }
    }
  }

  async function send(file, rel, line) {
    const key = "cairn-upload:" + base + ":" + rel + ":" + file.size + ":" + file.lastModified;
    let id = localStorage.getItem(key), got = 0;
    if (id) {
      try { got = (await call("GET", base + "/" + id)).received; } catch (e) { id = null; }
    }
    if (!id) {
      const body = JSON.stringify({ path: rel, size: file.size, mtime_ms: file.lastModified });
      id = (await retrying(() => call("POST", base, body, "application/json"))).id;
      localStorage.setItem(key, id);
    }
    while (got < file.size) {
      const at = got, part = file.slice(at, Math.min(at + PART, file.size));
      got = (await retrying(() => call("PUT", base + "/" + id + "?offset=" + at, part,
        "application/octet-stream"))).received;
      line.textContent = rel + ": " + Math.floor(100 * got / file.size) + " %";
    }
    await retrying(() => call("POST", base + "/" + id + "/finish"));
    localStorage.removeItem(key);
    line.textContent = rel + ": uploaded";
  }

  async function sendAll(files) {
    let failed = 0;
    for (const [file, name] of files) {
      const rel = dir ? dir + "/" + name : name;
      const line = document.createElement("li");
      line.textContent = rel + ": starting";
      list.append(line);
      try { await send(file, rel, line); } catch (e) {
        failed++;
        line.textContent = rel + ": not uploaded: " + e.message;
        line.setAttribute("role", "alert");
      }
    }
    if (!failed && !stay) location.reload();
  }

  // The files under a dropped folder, with their paths below the drop.
  function walk(entry, prefix, out) {
    return new Promise(done => {
      if (entry.isFile) {
        entry.file(f => { out.push([f, prefix + entry.name]); done(); }, () => done());
      } else if (entry.isDirectory) {
        const reader = entry.createReader(), children = [];
        const more = () => reader.readEntries(async batch => {
          if (batch.length) { children.push(...batch); more(); return; }
          for (const c of children) await walk(c, prefix + entry.name + "/", out);
          done();
        }, () => done());
        more();
      } else done();
    });
  }

  const pick = document.getElementById("upload-pick");
  pick.addEventListener("change", () => {
    sendAll(Array.from(pick.files).map(f => [f, f.webkitRelativePath || f.name]));
  });
  for (const name of ["dragenter", "dragover"]) {
    box.addEventListener(name, e => { e.preventDefault(); box.classList.add("over"); });
  }
  box.addEventListener("dragleave", () => box.classList.remove("over"));
  box.addEventListener("drop", async e => {
    e.preventDefault();
    box.classList.remove("over");
    const out = [];
    const entries = Array.from(e.dataTransfer.items || [])
      .map(i => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    if (entries.length) {
      for (const entry of entries) await walk(entry, "", out);
    } else {
      for (const f of e.dataTransfer.files) out.push([f, f.name]);
    }
    sendAll(out);
  });
})();
