#!/usr/bin/env node
// The AWS AppSync simulator (@aws-amplify/amplify-appsync-simulator 2.16.x) as a test upstream:
// AppSync's classic Post API, resolved by a Lambda-style data source holding posts in memory.
//
//   APPSYNC_SIM_API_KEY=da2-... [APPSYNC_SIM_OIDC_ISSUER=https://...] node tests/js/appsync-sim.js
//
// Auth: API_KEY (the key above) by default; OPENID_CONNECT as an additional provider when an
// issuer is given (the simulator matches `iss` only and never verifies signatures).
// It listens on 127.0.0.1, port 0, and serves `GET /__stats` on a second port-0 server (and,
// uncounted, on its own port):
//   {"requests", "graphqlRequests", "resolverInvocations", "lastHeaders", "lastBody",
//    "realtimeUpgrades", "lastRealtimeUpgrade", "lastRealtimeHeader", "lastRealtimeProtocols",
//    "realtimeStarts", "lastStartAuthorization"}
// counting every HTTP request (and WebSocket upgrade) the simulator's server receives; for the
// real-time endpoint, the last upgrade's URL and headers as received (before the translation
// below), its decoded auth `header`, the subprotocols it offered, and the
// `extensions.authorization` of the last `start` message.
//
// Real AppSync also takes the real-time `header` in a `header-<base64url>` subprotocol (how
// aws-amplify v6 sends it); the simulator reads `?header=` only, so upgrades carrying that
// subprotocol are translated into `?header=<base64>&payload=e30=` before it sees them.
// When ready it prints one line to stdout: {"ready":true,"port":P,"statsPort":Q}; everything
// else goes to stderr. It exits when stdin closes or on SIGTERM/SIGINT.
'use strict';

const http = require('http');
const { once } = require('events');
const { AmplifyAppSyncSimulator } = require('@aws-amplify/amplify-appsync-simulator');

// stdout carries the ready line only: the simulator logs with console.log.
console.log = console.error;
console.info = console.error;

const apiKey = process.env.APPSYNC_SIM_API_KEY || process.argv[2];
const oidcIssuer = process.env.APPSYNC_SIM_OIDC_ISSUER || process.argv[3] || '';
if (!apiKey) {
  console.error('usage: APPSYNC_SIM_API_KEY=KEY [APPSYNC_SIM_OIDC_ISSUER=URL] node appsync-sim.js');
  process.exit(2);
}

// Real AppSync (and the simulator) lets an additional auth mode reach only the types and fields
// that name it, hence the directives on every type.
const modes = oidcIssuer ? '@aws_api_key @aws_oidc' : '@aws_api_key';
const schema = `
type Post ${modes} {
  id: ID!
  title: String
  author: String
}
type Query ${modes} {
  getPost(id: ID!): Post
  listPosts: [Post]
}
type Mutation ${modes} {
  createPost(id: ID!, title: String, author: String): Post
}
type Subscription ${modes} {
  onCreatePost: Post @aws_subscribe(mutations: ["createPost"])
}
schema {
  query: Query
  mutation: Mutation
  subscription: Subscription
}
`;

const posts = new Map([
  ['1', { id: '1', title: 'First post', author: 'alice' }],
  ['2', { id: '2', title: 'Second post', author: 'bob' }],
]);

const stats = {
  requests: 0,
  graphqlRequests: 0,
  resolverInvocations: 0,
  lastHeaders: null,
  lastBody: null,
  realtimeUpgrades: 0,
  lastRealtimeUpgrade: null,
  lastRealtimeHeader: null,
  lastRealtimeProtocols: null,
  realtimeStarts: 0,
  lastStartAuthorization: null,
};

const REALTIME_PATH = '/graphql/realtime';
const HEADER_PROTOCOL = 'header-';

// The decoded JSON of a base64 (standard or url-safe, padded or not) `header`, or the error.
function decodeHeader(b64) {
  try {
    return JSON.parse(Buffer.from(b64, 'base64').toString('utf8'));
  } catch (e) {
    return { undecodable: String(b64), error: e.message };
  }
}

// An upgrade on the real-time path: record it, and move a `header-<base64url>` subprotocol into
// the query string, leaving the other offered subprotocols (`graphql-ws`) in place.
function translateRealtimeUpgrade(req) {
  const url = new URL(req.url, 'http://simulator');
  if (url.pathname !== REALTIME_PATH) {
    return;
  }
  stats.realtimeUpgrades += 1;
  stats.lastRealtimeUpgrade = { url: req.url, headers: { ...req.headers } };
  const offered = (req.headers['sec-websocket-protocol'] || '')
    .split(',')
    .map((p) => p.trim())
    .filter((p) => p !== '');
  stats.lastRealtimeProtocols = offered;
  const fromProtocol = offered.find((p) => p.startsWith(HEADER_PROTOCOL));
  if (fromProtocol) {
    const json = Buffer.from(fromProtocol.slice(HEADER_PROTOCOL.length), 'base64url');
    url.searchParams.set('header', json.toString('base64'));
    url.searchParams.set('payload', Buffer.from('{}').toString('base64'));
    req.url = url.pathname + url.search;
    const rest = offered.filter((p) => p !== fromProtocol);
    if (rest.length > 0) {
      req.headers['sec-websocket-protocol'] = rest.join(', ');
    } else {
      delete req.headers['sec-websocket-protocol'];
    }
    stats.lastRealtimeHeader = decodeHeader(json.toString('base64'));
  } else {
    const header = url.searchParams.get('header');
    stats.lastRealtimeHeader = header === null ? null : decodeHeader(header);
  }
}

// Every message on a real-time connection: record the `start` messages' authorization.
function recordRealtimeMessages(socket) {
  socket.on('message', (raw) => {
    let message;
    try {
      message = JSON.parse(raw.toString('utf8'));
    } catch {
      return;
    }
    if (message && message.type === 'start') {
      stats.realtimeStarts += 1;
      const ext = (message.payload && message.payload.extensions) || {};
      stats.lastStartAuthorization = ext.authorization ?? null;
    }
  });
}

// The Lambda function behind every resolver: `payload` is what the request template renders.
async function postsLambda(payload) {
  stats.resolverInvocations += 1;
  const args = payload.arguments || {};
  switch (payload.field) {
    case 'getPost':
      return posts.get(args.id) || null;
    case 'listPosts':
      return [...posts.values()];
    case 'createPost': {
      const post = { id: args.id, title: args.title ?? null, author: args.author ?? null };
      posts.set(post.id, post);
      return post;
    }
    default:
      throw new Error(`no resolver for ${payload.field}`);
  }
}

const requestTemplate = `{
  "version": "2018-05-29",
  "operation": "Invoke",
  "payload": {
    "field": "$ctx.info.fieldName",
    "arguments": $util.toJson($ctx.arguments)
  }
}`;
const responseTemplate = `#if($ctx.error)
  $util.error($ctx.error.message, $ctx.error.type)
#end
$util.toJson($ctx.result)`;

const resolver = (typeName, fieldName) => ({
  kind: 'UNIT',
  typeName,
  fieldName,
  dataSourceName: 'posts',
  requestMappingTemplate: requestTemplate,
  responseMappingTemplate: responseTemplate,
});

const additionalAuthenticationProviders = oidcIssuer
  ? [
      {
        authenticationType: 'OPENID_CONNECT',
        openIDConnectConfig: { Issuer: oidcIssuer },
      },
    ]
  : [];

async function main() {
  const simulator = new AmplifyAppSyncSimulator({ port: 0, wsPort: 0 });
  simulator.init({
    schema: { content: schema },
    dataSources: [{ type: 'AWS_LAMBDA', name: 'posts', invoke: postsLambda }],
    resolvers: [
      resolver('Query', 'getPost'),
      resolver('Query', 'listPosts'),
      resolver('Mutation', 'createPost'),
    ],
    appSync: {
      name: 'graphfront-test',
      apiKey,
      defaultAuthenticationType: { authenticationType: 'API_KEY' },
      additionalAuthenticationProviders,
    },
  });

  // The simulator's start() picks a port in 8900-9999 with get-port (checked, then bound: racy
  // between parallel tests) and listens on every interface. Its server is started here the same
  // way, on 127.0.0.1 port 0. These are private fields of 2.16.x: fail loudly if they move.
  const server = simulator._server;
  const httpServer = server && server._httpServer;
  const realtime = server && server._realTimeSubscriptionServer;
  if (!(httpServer instanceof http.Server) || !realtime || typeof realtime.start !== 'function') {
    throw new Error('unexpected simulator internals: expected @aws-amplify/amplify-appsync-simulator 2.16.x');
  }

  const record = (req) => {
    stats.requests += 1;
    if (req.method === 'POST' && req.url.split('?')[0] === '/graphql') {
      stats.graphqlRequests += 1;
    }
    stats.lastHeaders = req.headers;
    // Express's body parser reads the body in the same tick; this listener, attached first,
    // sees every chunk and the end before the request is handled.
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      stats.lastBody = Buffer.concat(chunks).toString('utf8');
    });
  };
  httpServer.prependListener('request', record);
  httpServer.prependListener('upgrade', (req) => {
    stats.requests += 1;
    stats.lastHeaders = { ...req.headers };
    stats.lastBody = null;
    translateRealtimeUpgrade(req);
  });
  const wsServer = realtime.realtimeServer && realtime.realtimeServer.webSocketServer;
  if (!wsServer || typeof wsServer.on !== 'function') {
    throw new Error('unexpected simulator internals: no real-time WebSocket server');
  }
  wsServer.on('connection', recordRealtimeMessages);

  // `GET /__stats` on the simulator's own port too (not counted), for tests that know only it.
  const handlers = httpServer.listeners('request');
  httpServer.removeAllListeners('request');
  httpServer.on('request', (req, res) => {
    if (req.method === 'GET' && req.url === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
      return;
    }
    for (const handler of handlers) {
      handler.call(httpServer, req, res);
    }
  });

  await realtime.start();
  httpServer.listen(0, '127.0.0.1');
  await once(httpServer, 'listening');
  const port = httpServer.address().port;
  server._url = `http://127.0.0.1:${port}`;
  server._localhostUrl = `http://localhost:${port}`;

  const statsServer = http.createServer((req, res) => {
    if (req.method === 'GET' && req.url === '/__stats') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify(stats));
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  statsServer.listen(0, '127.0.0.1');
  await once(statsServer, 'listening');

  process.stdout.write(
    `${JSON.stringify({ ready: true, port, statsPort: statsServer.address().port })}\n`,
  );
}

const exit = () => process.exit(0);
process.on('SIGTERM', exit);
process.on('SIGINT', exit);
process.stdin.on('end', exit);
process.stdin.on('close', exit);
process.stdin.resume();

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
