// Relays JSON lines to ZetaSQL's local_service gRPC server (tests/zetasql.py starts both).
// stdin:  {"id": N, "method": "Analyze", "request": {...}}   (proto3 JSON field names, enums as names)
// stdout: {"id": N, "response": {...}} or {"id": N, "error": {"code": C, "message": "..."}}
// Usage: node zetasql_bridge.js PROTO_DIR HOST:PORT   (NODE_PATH holds the package's node_modules)
'use strict';
const readline = require('readline');
const grpc = require('@grpc/grpc-js');
const loader = require('@grpc/proto-loader');

const [protoDir, address] = process.argv.slice(2);
const definition = loader.loadSync('local_service.proto', {
  includeDirs: [protoDir], longs: String, enums: String, oneofs: true,
});
const Service = grpc.loadPackageDefinition(definition).zetasql.local_service.ZetaSqlLocalService;
const limit = 256 * 1024 * 1024;
const client = new Service(address, grpc.credentials.createInsecure(),
  {'grpc.max_send_message_length': limit, 'grpc.max_receive_message_length': limit});

let pending = 0;
let closed = false;
const input = readline.createInterface({input: process.stdin});
input.on('line', line => {
  const {id, method, request} = JSON.parse(line);
  if (typeof client[method] !== 'function') {
    process.stdout.write(JSON.stringify({id, error: {code: 12, message: `no method ${method}`}}) + '\n');
    return;
  }
  pending++;
  client[method](request, {deadline: Date.now() + 60000}, (err, response) => {
    const answer = err ? {id, error: {code: err.code, message: err.details}} : {id, response};
    process.stdout.write(JSON.stringify(answer) + '\n');
    if (--pending === 0 && closed) client.close();
  });
});
input.on('close', () => {
  closed = true;
  if (pending === 0) client.close();
});
