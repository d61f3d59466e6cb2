#!/usr/bin/env node
// AI Coach integrator example (Node, kafkajs): subscribe to `verdicts` or `results` with your own
// consumer group, validate each message against the published JSON Schema, print it as one JSON line.
//
//   npm ci && node consume.js --bootstrap 127.0.0.1:19092 --topic verdicts --group my-app
//
// Options: --topic verdicts|results|partial-verdicts  --group ID  --schema-dir DIR (default ../../../shared/schemas)
//          --analysis-id ID (only that analysis)  --max N (exit after N)  --prefix P (topic prefix)
'use strict';
const fs = require('fs');
const path = require('path');
const { Kafka, logLevel } = require('kafkajs');
const Ajv2020 = require('ajv/dist/2020');

const args = { bootstrap: '127.0.0.1:19092', topic: 'verdicts', group: 'node-integrator', prefix: '',
  'schema-dir': path.join(__dirname, '..', '..', '..', 'shared', 'schemas'), 'analysis-id': '', max: '0' };
const argv = process.argv.slice(2);
for (let i = 0; i < argv.length; i += 2) args[argv[i].replace(/^--/, '')] = argv[i + 1];

const SCHEMA = { verdicts: 'verdict.schema.json', results: 'analysis-completed.schema.json',
  'partial-verdicts': 'partial-verdict.schema.json' }[args.topic];
if (!SCHEMA) { console.error(`unknown topic ${args.topic}: verdicts, results or partial-verdicts`); process.exit(2); }
const validate = new Ajv2020({ strict: false, allErrors: true })
  .compile(JSON.parse(fs.readFileSync(path.join(args['schema-dir'], SCHEMA), 'utf8')));

async function main() {
  const kafka = new Kafka({ clientId: 'node-integrator', brokers: [args.bootstrap], logLevel: logLevel.ERROR });
  const consumer = kafka.consumer({ groupId: args.group });
  await consumer.connect();
  await consumer.subscribe({ topic: args.prefix + args.topic, fromBeginning: true });
  let seen = 0;
  const max = parseInt(args.max, 10);
  const stop = async (code) => { await consumer.disconnect(); process.exit(code); };
  process.on('SIGINT', () => stop(0));
  process.on('SIGTERM', () => stop(0));
  await consumer.run({
    eachMessage: async ({ message }) => {
      let doc;
      try { doc = JSON.parse(message.value.toString('utf8')); } catch (e) {
        console.error(`skipping a message that is not JSON: ${e.message}`); return;
      }
      if (!validate(doc)) {
        console.error(`skipping a message that does not match ${SCHEMA}: ${JSON.stringify(validate.errors)}`); return;
      }
      if (args['analysis-id'] && doc.analysis_id !== args['analysis-id']) return;
      // A redelivered verdict carries the same content: keep the latest per analysis_id.
      console.log(JSON.stringify({ valid: true, schema: doc.schema, message: doc }));
      seen += 1;
      if (max && seen >= max) setImmediate(() => stop(0));
    },
  });
}

main().catch((e) => { console.error(e); process.exit(1); });
