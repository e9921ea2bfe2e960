// Create (or update) one MongoDB user per service, each with only its own role, as
// video2mp3-users.json defines them. The mongo image runs this file once, as the root
// user, when it initialises an empty data directory (/docker-entrypoint-initdb.d). Run
// it again by hand to apply a changed definition or a new password to a running server:
//   mongosh -u "$MONGO_INITDB_ROOT_USERNAME" -p --authenticationDatabase admin \
//     /docker-entrypoint-initdb.d/10-video2mp3-users.js
// Each user's password comes from that service's own MONGO_URI, given to this container
// under the name the definition's uriVariable says, so every password is written once.
// A missing URI, a URI for another user, or a placeholder password stops the start.

const DEFINITIONS = "/docker-entrypoint-initdb.d/video2mp3-users.json";
// The services refuse the same template values (common/config.py, _PLACEHOLDER).
const PLACEHOLDER = /^(|change[-_ ]?me.*|replace[-_ ]?me.*|placeholder.*|example.*|<.*>|x+|secret|password|guest)$/i;
const CREDENTIALS = /^mongodb(?:\+srv)?:\/\/([^:@/?#]*):([^@/?#]*)@/;

function credentialsOf(variable, user) {
  const uri = process.env[variable];
  if (!uri) {
    throw new Error(`${variable} is not set: it must be the MONGO_URI of user ${user}`);
  }
  const match = CREDENTIALS.exec(uri);
  if (match === null) {
    throw new Error(`${variable} carries no user and password (mongodb://${user}:PASSWORD@...)`);
  }
  const [name, password] = [decodeURIComponent(match[1]), decodeURIComponent(match[2])];
  if (name !== user) {
    throw new Error(`${variable} logs in as ${JSON.stringify(name)}, not as ${user}`);
  }
  if (PLACEHOLDER.test(password.trim())) {
    throw new Error(`${variable} has a missing or placeholder password`);
  }
  return password;
}

const definitions = JSON.parse(require("fs").readFileSync(DEFINITIONS, "utf8"));
const admin = db.getSiblingDB("admin");
// Every password is checked before anything is written, so a refusal changes nothing.
const passwords = new Map(
  definitions.users.map((user) => [user.user, credentialsOf(user.uriVariable, user.user)]),
);

for (const role of definitions.roles) {
  const grants = { privileges: role.privileges, roles: [] };
  if (admin.getRole(role.role) === null) {
    admin.createRole({ role: role.role, ...grants });
    print(`created role ${role.role}`);
  } else {
    admin.updateRole(role.role, grants);
    print(`updated role ${role.role}`);
  }
}

for (const user of definitions.users) {
  const settings = {
    pwd: passwords.get(user.user),
    roles: user.roles.map((role) => ({ role, db: "admin" })),
  };
  if (admin.getUser(user.user) === null) {
    admin.createUser({ user: user.user, ...settings });
    print(`created user ${user.user}`);
  } else {
    admin.updateUser(user.user, settings);
    print(`updated user ${user.user}`);
  }
}
