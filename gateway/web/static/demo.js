// The demo SPA (OAuth 2.0 for Browser-Based Apps, the token-handler pattern): it navigates to
// /login/start to sign in, asks /login/user who is signed in, calls the API with
// credentials: 'include', and never holds a token.
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

function show(user) {
  $("signed-in").hidden = !user;
  $("signed-out").hidden = !!user;
  $("who").textContent = user ? user.preferred_username : "";
  $("session").textContent = user
    ? (user.name || user.preferred_username) + ", signed in at " +
      new Date(user.auth_time * 1000).toLocaleTimeString() + "; the session lasts until " +
      new Date(user.session_expires_at * 1000).toLocaleString() + "."
    : "";
  if (!user && timer) {
    clearInterval(timer);
    timer = null;
    $("poll").checked = false;
  }
}

function say(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

// Who is signed in: 200 with the user's claims, 401 when nobody is (no failure on page load).
async function user() {
  const response = await fetch("/login/user", { credentials: "include" });
  const body = response.ok ? await response.json() : null;
  log(response.ok ? "GET /login/user" : "GET /login/user (not signed in)", response.status,
      null, response.ok ? undefined : "info");
  show(body);
  return body;
}

async function whoami() {
  const response = await fetch("/api/whoami", { credentials: "include" });
  const body = response.ok ? await response.json() : null;
  log("GET /api/whoami", response.status, body && body.token);
  if (response.status === 401) {
    say("The session has ended: sign in again.");
    show(null);
  }
}

// Signing in goes through the gateway's own address (its issuer): point the link there, and
// say so when this page is open at another address.
async function checkAddress() {
  try {
    const response = await fetch("/.well-known/openid-configuration");
    const issuer = new URL((await response.json()).issuer);
    const back = issuer.origin + "/";
    $("signin").href = issuer.origin + "/login/start?return_to=" + encodeURIComponent(back);
    if (issuer.origin !== location.origin) {
      say("This page is open at " + location.origin + ", but the gateway's address is " +
          issuer.origin + ": signing in brings you back to " + back + ".");
    }
  } catch (error) {
    // Discovery is optional for the demo: the relative link works at the issuer's address.
  }
}

// An authorization server's refusal comes back as ?login_error=<code>.
function showLoginError() {
  const error = new URLSearchParams(location.search).get("login_error");
  if (error) {
    say("Signing in did not finish: " + error.replace(/_/g, " ") + ".");
    history.replaceState(null, "", location.pathname);
  }
}

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
  say("");
  show(null);
});

showLoginError();
checkAddress();
user();
