// The demo SPA: credentials: 'include' everywhere, no token ever in JavaScript.
"use strict";

const $ = (id) => document.getElementById(id);
let timer = null;

function log(request, status, token) {
  const row = document.createElement("tr");
  const cells = [
    new Date().toLocaleTimeString(),
    request,
    String(status),
    token ? token.jti.slice(0, 8) : "",
    token ? new Date(token.exp * 1000).toLocaleTimeString() : "",
  ];
  for (const text of cells) {
    const cell = document.createElement("td");
    cell.textContent = text;
    row.appendChild(cell);
  }
  row.className = status < 400 ? "ok" : "bad";
  $("log").prepend(row);
  $("cookies").textContent = JSON.stringify(document.cookie);
}

function show(signedIn, who) {
  $("signed-in").hidden = !signedIn;
  $("signed-out").hidden = signedIn;
  $("who").textContent = who || "";
  if (!signedIn && timer) {
    clearInterval(timer);
    timer = null;
    $("poll").checked = false;
  }
}

async function whoami() {
  const response = await fetch("/api/whoami", { credentials: "include" });
  const body = response.ok ? await response.json() : null;
  log("GET /api/whoami", response.status, body && body.token);
  show(response.ok, body && body.user);
}

$("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new URLSearchParams({
    grant_type: "password",
    client_id: "spa",
    username: $("username").value,
    password: $("password").value,
    scope: "openid profile offline_access api",
    access_type: "offline",
  });
  const response = await fetch("/oauth2/token", {
    method: "POST",
    credentials: "include",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: form,
  });
  log("POST /oauth2/token", response.status, null);
  if (response.ok) {
    await whoami();
  }
});

$("call").addEventListener("click", whoami);

$("poll").addEventListener("change", () => {
  if ($("poll").checked) {
    timer = setInterval(whoami, 5000);
  } else if (timer) {
    clearInterval(timer);
    timer = null;
  }
});

$("logout").addEventListener("click", async () => {
  const response = await fetch("/oauth2/logout", { method: "POST", credentials: "include" });
  log("POST /oauth2/logout", response.status, null);
  show(false);
});

whoami();
