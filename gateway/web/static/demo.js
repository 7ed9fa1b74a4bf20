// The demo SPA: credentials: 'include' everywhere, no token ever in JavaScript.
"use strict";

const $ = (id) => document.getElementById(id);
let timer = null;

function log(request, status, token, kind) {
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
  row.className = kind || (status < 400 ? "ok" : "bad");
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

function say(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

async function whoami(probe) {
  const response = await fetch("/api/whoami", { credentials: "include" });
  const body = response.ok ? await response.json() : null;
  // The probe on page load only asks whether a session exists: a 401 is no failure.
  const kind = probe === true && response.status === 401 ? "info" : undefined;
  log(kind ? "GET /api/whoami (not signed in yet)" : "GET /api/whoami", response.status,
      body && body.token, kind);
  show(response.ok, body && body.user);
}

// The gateway answers sign-ins from its own address (its issuer) and the listed origins only.
async function checkAddress() {
  try {
    const response = await fetch("/.well-known/openid-configuration");
    const issuer = new URL((await response.json()).issuer);
    if (issuer.origin !== location.origin) {
      say("This page is open at " + location.origin + ", but the gateway's address is " +
          issuer.origin + ". If signing in fails, open " + issuer.origin + "/ instead.");
    }
  } catch (error) {
    // Discovery is optional for the demo.
  }
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
    say("");
    await whoami(false);
  } else {
    let reason = "the gateway answered " + response.status;
    try {
      const body = await response.json();
      reason = body.error_description || body.error || reason;
    } catch (error) {
      // Not JSON: keep the status.
    }
    say("Sign-in refused: " + reason + ".");
  }
});

$("call").addEventListener("click", () => whoami(false));

$("poll").addEventListener("change", () => {
  if ($("poll").checked) {
    timer = setInterval(() => whoami(false), 5000);
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

checkAddress();
whoami(true);
