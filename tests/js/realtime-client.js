#!/usr/bin/env node
// A real-time GraphQL client for graphfront's tests: one subscription, through a real client
// library, to a custom domain served by graphfront.
//
//   REALTIME_API_KEY=da2-... REALTIME_QUERY='subscription { ... }' REALTIME_CONNECT_PORT=P \
//   NODE_EXTRA_CA_CERTS=ca.pem node tests/js/realtime-client.js MODE https://api.test:P/graphql
//
// MODE:
//   appsync-ws   raw `ws` speaking AppSync's real-time dialect (connection_init, start with
//                extensions.authorization {host, x-api-key}); the connection's auth `header` in
//                the query string, or with REALTIME_AUTH=subprotocol in a `header-<base64url>`
//                subprotocol beside `graphql-ws` (as real AppSync accepts it).
//   aws-appsync  AWSAppSyncClient (npm aws-appsync, the legacy client) `subscribe`, API_KEY auth.
//   amplify      aws-amplify v6 `generateClient().graphql({ query }).subscribe()`, API_KEY auth.
//   graphql-ws   graphql-ws `createClient().subscribe()` (graphql-transport-ws).
// Every mode derives the WebSocket URL from the GraphQL URL the way AppSync's clients do for a
// custom domain: `wss://` + host + path + `/realtime` (https://api.test/graphql becomes
// wss://api.test/graphql/realtime).
//
// Every connection to the URL's host goes to 127.0.0.1:REALTIME_CONNECT_PORT (default: the
// URL's port), whatever the libraries do to resolve and connect: TLS still sends the host as SNI
// and the URL's authority as `Host`. NODE_EXTRA_CA_CERTS is the CA to trust (read by Node at
// start-up, so it covers every library's TLS).
//
// stdout, one JSON line each:
//   {"opened":{"protocol":P}}   a WebSocket opened; P is the subprotocol the server chose
//   {"subscribed":true}         the subscription is acknowledged (see `subscribedSignal` below)
//   {"data":...}                one event's `data`
//   {"error":...}               an error from the library or the server
//   {"closed":CODE}             the WebSocket closed
// The library's own logs, and every frame sent and received, go to stderr. Exits when stdin
// closes.
'use strict';

const dns = require('dns');
const net = require('net');
const WS = require('ws');

const [mode, graphqlUrl] = process.argv.slice(2);
const apiKey = process.env.REALTIME_API_KEY || '';
const query = process.env.REALTIME_QUERY || '';
const authIn = process.env.REALTIME_AUTH || 'query';
const MODES = ['appsync-ws', 'aws-appsync', 'amplify', 'graphql-ws'];
if (!MODES.includes(mode) || !graphqlUrl || !query) {
  console.error(
    `usage: REALTIME_API_KEY=K REALTIME_QUERY=Q [REALTIME_CONNECT_PORT=P] node realtime-client.js ` +
      `{${MODES.join('|')}} https://host[:port]/graphql`,
  );
  process.exit(2);
}
const endpoint = new URL(graphqlUrl);
const connectPort = Number(process.env.REALTIME_CONNECT_PORT || endpoint.port || 443);

// stdout carries the JSON lines only.
const log = (...args) => console.error(...args);
console.log = log;
console.info = log;
console.debug = log;
console.warn = log;
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

// ---- Name and port mapping -------------------------------------------------------------------
// `ws` and undici (fetch) both end in net.Socket#connect (tls.connect included), which resolves
// through dns.lookup unless the host is an IP: rewrite the destination there, and keep
// dns.lookup answering for the host for anything that resolves on its own.
const mappedHost = endpoint.hostname;
const originalLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (hostname === mappedHost) {
    const cb = typeof options === 'function' ? options : callback;
    const all = typeof options === 'object' && options !== null && options.all;
    const answer = { address: '127.0.0.1', family: 4 };
    return process.nextTick(() => (all ? cb(null, [answer]) : cb(null, answer.address, 4)));
  }
  return originalLookup.apply(this, arguments);
};
const originalConnect = net.Socket.prototype.connect;
net.Socket.prototype.connect = function connect(...args) {
  // net.connect passes [options, cb] as one normalized array; tls.connect passes (options, cb).
  const options = Array.isArray(args[0]) ? args[0][0] : args[0];
  if (options && typeof options === 'object' && options.host === mappedHost) {
    options.host = '127.0.0.1';
    options.port = connectPort;
  }
  return originalConnect.apply(this, args);
};

// ---- A WebSocket that reports what the libraries do ------------------------------------------
let sawStartAck = () => {};
let sawSubscribeSent = () => {};

// Auth material in URLs and subprotocols is logged, as the tests run with throwaway keys; the
// lead needs the exact shapes.
class ReportingWebSocket extends WS {
  constructor(url, protocols, options) {
    super(url, protocols, options);
    log(`[ws] new WebSocket ${url} protocols=${JSON.stringify(protocols)}`);
    this.on('open', () => {
      log(`[ws] open, server chose subprotocol ${JSON.stringify(this.protocol)}`);
      emit({ opened: { protocol: this.protocol } });
    });
    this.on('message', (data) => {
      const text = data.toString('utf8');
      log(`[ws] <- ${text}`);
      let message;
      try {
        message = JSON.parse(text);
      } catch {
        return;
      }
      if (message && message.type === 'start_ack') {
        sawStartAck(message);
      }
    });
    this.on('error', (e) => log(`[ws] error ${e.message}`));
    this.on('close', (code, reason) => {
      log(`[ws] close ${code} ${reason}`);
      emit({ closed: code });
    });
  }

  send(data, ...rest) {
    log(`[ws] -> ${data}`);
    try {
      if (JSON.parse(data).type === 'subscribe') {
        sawSubscribeSent();
      }
    } catch {
      // not JSON: nothing to report
    }
    return super.send(data, ...rest);
  }
}
globalThis.WebSocket = ReportingWebSocket;

// ---- Helpers ---------------------------------------------------------------------------------
const realtimeUrl = () => `wss://${endpoint.host}${endpoint.pathname}/realtime`;
const amzDate = () => new Date().toISOString().replace(/[:-]|\.\d{3}/g, '');
const errorJson = (e) => {
  if (e instanceof Error) {
    return { message: e.message, name: e.name };
  }
  try {
    return JSON.parse(JSON.stringify(e));
  } catch {
    return String(e);
  }
};

let subscribed = false;
const markSubscribed = () => {
  if (!subscribed) {
    subscribed = true;
    emit({ subscribed: true });
  }
};

// ---- Modes -----------------------------------------------------------------------------------

// AppSync's dialect by hand, as in AWS's "Building a real-time WebSocket client" guide.
function appsyncWs() {
  const header = { host: endpoint.host, 'x-amz-date': amzDate(), 'x-api-key': apiKey };
  const json = JSON.stringify(header);
  let url = realtimeUrl();
  let protocols = ['graphql-ws'];
  if (authIn === 'subprotocol') {
    protocols = ['graphql-ws', `header-${Buffer.from(json).toString('base64url')}`];
  } else {
    url += `?header=${encodeURIComponent(Buffer.from(json).toString('base64'))}&payload=e30=`;
  }
  const socket = new ReportingWebSocket(url, protocols);
  socket.on('open', () => socket.send(JSON.stringify({ type: 'connection_init' })));
  socket.on('error', (e) => emit({ error: errorJson(e) }));
  socket.on('message', (raw) => {
    const message = JSON.parse(raw.toString('utf8'));
    switch (message.type) {
      case 'connection_ack':
        socket.send(
          JSON.stringify({
            id: '1',
            type: 'start',
            payload: {
              data: JSON.stringify({ query, variables: {} }),
              extensions: { authorization: { host: endpoint.host, 'x-api-key': apiKey } },
            },
          }),
        );
        break;
      case 'start_ack':
        markSubscribed();
        break;
      case 'data':
        emit({ data: message.payload.data });
        break;
      case 'error':
      case 'connection_error':
        emit({ error: message.payload ?? message });
        break;
      default:
        break;
    }
  });
}

// aws-appsync 4.x: its realtime link does not surface start_ack to `client.subscribe` callers
// (the `@@controlEvents` switch is read from the operation's context, which apollo-client 2.4's
// subscribe cannot set), so the acknowledgement is taken from the start_ack frame on the
// library's own socket.
function awsAppsync() {
  sawStartAck = markSubscribed;
  const { default: AWSAppSyncClient, AUTH_TYPE } = require('aws-appsync');
  const { parse } = require('graphql');
  const client = new AWSAppSyncClient({
    url: endpoint.toString(),
    region: 'us-east-1',
    auth: { type: AUTH_TYPE.API_KEY, apiKey },
    disableOffline: true,
  });
  client.subscribe({ query: parse(query) }).subscribe({
    next: (result) => emit({ data: result.data }),
    error: (e) => emit({ error: errorJson(e) }),
    complete: () => log('[aws-appsync] complete'),
  });
}

// aws-amplify v6: Hub's `api` channel announces each start_ack ("Subscription ack").
function amplify() {
  const { Amplify } = require('aws-amplify');
  const { generateClient, CONNECTION_STATE_CHANGE } = require('aws-amplify/api');
  const { Hub } = require('aws-amplify/utils');
  Amplify.configure({
    API: {
      GraphQL: {
        endpoint: endpoint.toString(),
        region: 'us-east-1',
        defaultAuthMode: 'apiKey',
        apiKey,
      },
    },
  });
  Hub.listen('api', ({ payload }) => {
    if (payload.event === CONNECTION_STATE_CHANGE) {
      log(`[amplify] connection state ${payload.data && payload.data.connectionState}`);
    } else {
      log(`[amplify] ${payload.event}`);
      if (payload.event === 'Subscription ack') {
        markSubscribed();
      }
    }
  });
  const client = generateClient();
  client.graphql({ query }).subscribe({
    next: (event) => emit({ data: event.data }),
    error: (e) => emit({ error: errorJson(e) }),
    complete: () => log('[amplify] complete'),
  });
}

// graphql-transport-ws has no acknowledgement of `subscribe`: the subscription counts as
// started once the `subscribe` frame is written after connection_ack.
function graphqlWs() {
  const { createClient } = require('graphql-ws');
  sawSubscribeSent = () => setImmediate(markSubscribed);
  const client = createClient({
    url: realtimeUrl(),
    webSocketImpl: ReportingWebSocket,
    retryAttempts: 0,
    on: {
      connected: () => log('[graphql-ws] connected'),
      closed: (e) => log(`[graphql-ws] closed ${e && e.code}`),
    },
  });
  client.subscribe(
    { query },
    {
      next: (result) =>
        result.errors ? emit({ error: result.errors }) : emit({ data: result.data }),
      error: (e) =>
        emit({ error: e && typeof e.code === 'number' ? { closed: e.code } : errorJson(e) }),
      complete: () => log('[graphql-ws] complete'),
    },
  );
}

process.on('unhandledRejection', (e) => emit({ error: errorJson(e) }));
process.stdin.on('end', () => process.exit(0));
process.stdin.on('close', () => process.exit(0));
process.stdin.resume();

({ 'appsync-ws': appsyncWs, 'aws-appsync': awsAppsync, amplify, 'graphql-ws': graphqlWs })[mode]();
