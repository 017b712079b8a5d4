// The native /v1 API, used exactly as a script would use it: the session cookie rides along by
// itself (HttpOnly: scripts never see it) and every state-changing call carries the CSRF token.

let csrfToken = null;

export function setCsrf(token) {
  csrfToken = token;
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function errorFrom(response) {
  let code = "http_error";
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    if (body && body.error) {
      code = body.error.code || code;
      message = body.error.message || message;
    }
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(response.status, code, message);
}

function headersFor(method, extra = {}) {
  const headers = { ...extra };
  if (!["GET", "HEAD"].includes(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  return headers;
}

export async function api(path, { method = "GET", json, body, query, headers = {}, raw = false } = {}) {
  let url = path;
  if (query) {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") params.set(k, v);
    const qs = params.toString();
    if (qs) url += (url.includes("?") ? "&" : "?") + qs;
  }
  const init = { method, headers: headersFor(method, headers), credentials: "same-origin" };
  if (json !== undefined) {
    init.body = JSON.stringify(json);
    init.headers["Content-Type"] = "application/json";
  } else if (body !== undefined) {
    init.body = body;
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch (exc) {
    throw new ApiError(0, "network_error", String(exc.message || exc));
  }
  if (!response.ok) throw await errorFrom(response);
  if (raw) return response;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

// POST/PUT a body with upload progress (fetch cannot report it); resolves with the parsed JSON.
export function sendWithProgress(method, url, body, onProgress, headers = {}) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open(method, url);
    for (const [k, v] of Object.entries(headersFor(method, headers))) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress && onProgress(e.loaded, e.total);
    xhr.onerror = () => reject(new ApiError(0, "network_error", "the connection failed"));
    xhr.onload = () => {
      let parsed = null;
      try {
        parsed = JSON.parse(xhr.responseText);
      } catch {
        /* keep null */
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(parsed);
      else {
        const err = parsed && parsed.error ? parsed.error : {};
        reject(new ApiError(xhr.status, err.code || "http_error", err.message || `HTTP ${xhr.status}`));
      }
    };
    xhr.send(body);
  });
}

// Resumable chunked upload through /v1/uploads: retries a failed chunk from the offset the
// server reports, so a dropped connection costs one chunk, not the whole file.
export async function chunkedUpload(file, onProgress, { chunkBytes = 8 * 1024 * 1024, retries = 5 } = {}) {
  let upload = await api("/v1/uploads", { method: "POST", json: { filename: file.name, size: file.size } });
  const step = Math.min(chunkBytes, upload.max_chunk_bytes);
  let failures = 0;
  while (!upload.complete) {
    const start = upload.received;
    const chunk = file.slice(start, Math.min(file.size, start + step));
    try {
      upload = await sendWithProgress(
        "PUT",
        `/v1/uploads/${upload.id}?offset=${start}`,
        chunk,
        (loaded) => onProgress && onProgress(start + loaded, file.size),
        { "Content-Type": "application/octet-stream" },
      );
      failures = 0;
    } catch (exc) {
      if (exc.status && exc.status !== 409 && exc.status < 500) throw exc;
      if (++failures > retries) throw exc;
      await new Promise((r) => setTimeout(r, 500 * failures));
      upload = await api(`/v1/uploads/${upload.id}`);
    }
    onProgress && onProgress(upload.received, file.size);
  }
  return upload;
}
