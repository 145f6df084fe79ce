#!/usr/bin/env node
// Apollo Client with its automatic persisted queries link (`@apollo/client/link/persisted-queries`,
// SHA-256 from node's crypto), sending one query a few times to a site served by graphfront.
//
//   APQ_QUERY='query Q { ... }' [APQ_VARIABLES='{"id":"1"}'] [APQ_TIMES=3] [APQ_HEADERS='{"x-api-key":"..."}'] \
//   NODE_EXTRA_CA_CERTS=ca.pem node tests/js/apq-client.js {post|get} https://api.test:PORT/graphql
//
// `get` sets `useGETForHashedQueries` (hash-only requests go as GET; the link always retries
// with the full query over POST). Every connection to the URL's host goes to 127.0.0.1 on the
// URL's port; NODE_EXTRA_CA_CERTS is the CA to trust.
//
// stdout, one JSON line each, in order:
//   {"http":{"method":M,"query":TEXT|null,"hash":H|null,"status":S,"codes":[...],"xCache":X}}
//       one HTTP exchange the link made: the query text it sent (null when hash-only), the
//       persistedQuery hash, the status, the `extensions.code` of each error, `x-cache`
//   {"result":{"data":...}}   what `client.query` resolved to
//   {"error":"..."}           what it rejected with
//   {"done":true}
'use strict';

const crypto = require('crypto');
const dns = require('dns');

const { ApolloClient, InMemoryCache, HttpLink, gql } = require('@apollo/client/core');
const { createPersistedQueryLink } = require('@apollo/client/link/persisted-queries');

const [mode, graphqlUrl] = process.argv.slice(2);
const queryText = process.env.APQ_QUERY || '';
const variables = JSON.parse(process.env.APQ_VARIABLES || '{}');
const times = Number(process.env.APQ_TIMES || 3);
// Extra request headers (e.g. an API key), as a JSON object.
const headers = JSON.parse(process.env.APQ_HEADERS || '{}');
if (!['post', 'get'].includes(mode) || !graphqlUrl || !queryText) {
  console.error('usage: APQ_QUERY=Q node apq-client.js {post|get} https://host:port/graphql');
  process.exit(2);
}
const endpoint = new URL(graphqlUrl);
const emit = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

// fetch (undici) resolves through dns.lookup: answer for the URL's host with loopback.
const originalLookup = dns.lookup;
dns.lookup = function lookup(hostname, options, callback) {
  if (hostname === endpoint.hostname) {
    const cb = typeof options === 'function' ? options : callback;
    const all = typeof options === 'object' && options !== null && options.all;
    const answer = { address: '127.0.0.1', family: 4 };
    return process.nextTick(() => (all ? cb(null, [answer]) : cb(null, answer.address, 4)));
  }
  return originalLookup.apply(this, arguments);
};

// What the link puts on the wire, and what comes back.
async function reportingFetch(uri, options) {
  const method = (options && options.method) || 'GET';
  let sent = {};
  if (method === 'GET') {
    const params = new URL(uri).searchParams;
    sent = {
      query: params.get('query'),
      extensions: params.get('extensions') ? JSON.parse(params.get('extensions')) : undefined,
    };
  } else if (options && typeof options.body === 'string') {
    sent = JSON.parse(options.body);
  }
  const response = await fetch(uri, options);
  const text = await response.clone().text();
  let codes = [];
  try {
    codes = (JSON.parse(text).errors || []).map((e) => (e.extensions || {}).code || e.message);
  } catch {
    codes = ['(not JSON)'];
  }
  const pq = sent.extensions && sent.extensions.persistedQuery;
  emit({
    http: {
      method,
      query: sent.query || null,
      hash: pq ? pq.sha256Hash : null,
      status: response.status,
      codes,
      xCache: response.headers.get('x-cache'),
    },
  });
  return response;
}

const sha256 = (text) => crypto.createHash('sha256').update(text).digest('hex');
const link = createPersistedQueryLink({ sha256, useGETForHashedQueries: mode === 'get' }).concat(
  new HttpLink({ uri: graphqlUrl, fetch: reportingFetch, headers }),
);
const client = new ApolloClient({ link, cache: new InMemoryCache() });

(async () => {
  const query = gql(queryText);
  for (let i = 0; i < times; i += 1) {
    try {
      // Every time to the network: Apollo's own cache must not answer.
      const result = await client.query({ query, variables, fetchPolicy: 'no-cache' });
      emit({ result: { data: result.data } });
    } catch (e) {
      emit({ error: String((e && e.message) || e) });
    }
  }
  emit({ done: true });
})();
