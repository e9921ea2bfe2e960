// Run a mongosh script under Node with a recording stand-in for mongosh's `db`.
//
//   node mongosh_stub.js SCRIPT DEFINITIONS
//
// The script reads its definitions from where the mongo image mounts them; here that
// path is DEFINITIONS. EXISTING (JSON: {"roles": [...], "users": [...]}) names the roles
// and users the server already has. Prints the user-management calls the script made,
// as a JSON list of [method, ...arguments]; a script that throws exits 1 with its message.
"use strict";

const fs = require("fs");
const vm = require("vm");

const [scriptPath, definitionsPath] = process.argv.slice(2);
const existing = JSON.parse(process.env.EXISTING || '{"roles": [], "users": []}');
const calls = [];
const record = (method) => (...args) => {
  calls.push([method, ...args]);
};
const admin = {
  getRole: (name) => (existing.roles.includes(name) ? { role: name } : null),
  getUser: (name) => (existing.users.includes(name) ? { user: name } : null),
  createRole: record("createRole"),
  updateRole: record("updateRole"),
  createUser: record("createUser"),
  updateUser: record("updateUser"),
};
const db = {
  getSiblingDB: (name) => {
    if (name !== "admin") throw new Error(`the script used database ${name}, not admin`);
    return admin;
  },
};
const mountedFs = {
  readFileSync: (path, encoding) =>
    fs.readFileSync(path === "/docker-entrypoint-initdb.d/video2mp3-users.json" ? definitionsPath : path, encoding),
};
const context = vm.createContext({
  db,
  process: { env: { ...process.env } },
  require: (name) => (name === "fs" ? mountedFs : require(name)),
  print: (...args) => console.error(...args),
});

try {
  vm.runInContext(fs.readFileSync(scriptPath, "utf8"), context, { filename: scriptPath });
} catch (error) {
  console.error(error.message);
  process.exit(1);
}
console.log(JSON.stringify(calls));
