// The console's shell: sign-in, navigation between pages, and the outage banner.
import { getJson, onApiEvents, session } from "./api.js";
import { fleetPage } from "./fleet.js";
import { runsPage } from "./runs.js";
import { deadLettersPage } from "./deadletters.js";
import { knowledgePage } from "./kb.js";
import { playgroundPage } from "./playground.js";

const PAGES = {
  fleet: fleetPage,
  runs: runsPage,
  deadletters: deadLettersPage,
  knowledge: knowledgePage,
  playground: playgroundPage,
};
const HEARTBEAT_MS = 3000;
const $ = (id) => document.getElementById(id);

let who = null;
let current = null;
let heartbeat = null;

function showOutage(failure) {
  $("outage-text").textContent = failure.message;
  $("outage").hidden = false;
  document.body.classList.add("degraded");
}

function clearOutage() {
  $("outage").hidden = true;
  document.body.classList.remove("degraded");
}

function showLogin(message) {
  if (current) current.leave();
  current = null;
  clearInterval(heartbeat);
  who = null;
  $("nav").hidden = $("who").hidden = true;
  for (const page of document.querySelectorAll(".page")) page.hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message || "";
  $("login-key").focus();
}

async function signIn(key) {
  session.key = key;
  try {
    who = await getJson("/whoami");
  } catch (failure) {
    session.key = null;
    showLogin(failure.status === 401 ? "That key is not valid (or was revoked)." : failure.message);
    return;
  }
  $("login").hidden = true;
  $("nav").hidden = $("who").hidden = false;
  $("who-text").textContent = who.admin
    ? `${who.tenant} · admin (all tenants)` : `tenant ${who.tenant}`;
  heartbeat = setInterval(() => getJson("/whoami").catch(() => {}), HEARTBEAT_MS);
  route();
}

function route() {
  if (!who) return;
  const name = (location.hash || "#fleet").slice(1);
  const page = PAGES[name] ? name : "fleet";
  if (current) current.leave();
  for (const link of document.querySelectorAll("#nav a")) {
    link.classList.toggle("active", link.dataset.page === page);
  }
  for (const section of document.querySelectorAll(".page")) {
    section.hidden = section.id !== `page-${page}`;
  }
  current = PAGES[page]($(`page-${page}`), who);
  current.enter();
}

onApiEvents({
  outage: showOutage,
  recovered: clearOutage,
  unauthorized: () => showLogin("The key was refused (revoked?): sign in again."),
});

window.addEventListener("hashchange", route);
document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    signIn($("login-key").value.trim());
  });
  $("logout").addEventListener("click", () => {
    session.key = null;
    showLogin("");
  });
  if (session.key) signIn(session.key); else showLogin("");
});
