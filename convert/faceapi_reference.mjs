// The JavaScript reference for convert/faceapi.py: @vladmandic/face-api's own code on the CPU backend of
// the tfjs it bundles (pure JavaScript, no native binary). Called by Python with one JSON request:
//   node faceapi_reference.mjs request.json
// request: {"package": "<unpacked npm package>", "mode": "expressions" | "detect", "inputs": [
//   {"file": "<raw uint8 RGB pixels>", "height": h, "width": w}, ...]}
// expressions: each input is a face crop; prints [[7 probabilities], ...] (FaceExpressionNet.forwardInput).
// detect: each input is a whole image; prints [[{"box": [x1, y1, x2, y2], "probs": [...]}, ...], ...]
//   (SSD MobileNet v1 faces, then their expressions, as face-api's detectAllFaces().withFaceExpressions()).
import fs from 'fs';
import path from 'path';
import util from 'util';

const request = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const bundle = path.join(request.package, 'dist', 'face-api.esm.js');
// The ESM bundle is built for browsers: its Node platform shim has no TextEncoder. Hide `process`
// while it loads, then give tfjs a platform made of Node's own pieces.
const saved = globalThis.process;
globalThis.process = undefined;
let faceapi;
try {
  faceapi = await import(bundle);
} finally {
  globalThis.process = saved;
}
const tf = faceapi.tf;
tf.setPlatform('node-shim', {
  fetch: (url, init) => fetch(url, init),
  now: () => performance.now(),
  encode: (text) => new util.TextEncoder().encode(text),
  decode: (bytes, encoding) => new util.TextDecoder(encoding).decode(bytes),
  isTypedArray: (a) => util.types.isTypedArray(a),
});
await tf.setBackend('cpu');
await tf.ready();
faceapi.env.setEnv(faceapi.env.createNodejsEnv());

function weights(name) {
  const dir = path.join(request.package, 'model');
  const manifest = JSON.parse(fs.readFileSync(path.join(dir, `${name}-weights_manifest.json`), 'utf8'));
  const buffers = manifest[0].paths.map((p) => fs.readFileSync(path.join(dir, p)));
  const data = Buffer.concat(buffers);
  return tf.io.decodeWeights(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength), manifest[0].weights);
}

function image(input) {
  const pixels = new Uint8Array(fs.readFileSync(input.file));
  return tf.tensor3d(pixels, [input.height, input.width, 3], 'int32');
}

const expressions = new faceapi.FaceExpressionNet();
expressions.loadFromWeightMap(weights('face_expression_model'));
const results = [];
if (request.mode === 'expressions') {
  for (const input of request.inputs) {
    const tensor = image(input);
    const probs = expressions.forwardInput(await faceapi.toNetInput(tensor));
    results.push(Array.from(probs.dataSync()));
    tf.dispose([tensor, probs]);
  }
} else if (request.mode === 'detect') {
  const ssd = new faceapi.SsdMobilenetv1();
  ssd.loadFromWeightMap(weights('ssd_mobilenetv1_model'));
  const options = new faceapi.SsdMobilenetv1Options({ minConfidence: 0.5 });
  for (const input of request.inputs) {
    const tensor = image(input);
    const faces = await ssd.locateFaces(tensor, options);
    const found = [];
    for (const face of faces) {
      const b = face.box;
      const [crop] = await faceapi.extractFaceTensors(tensor, [face]);
      const probs = expressions.forwardInput(await faceapi.toNetInput(crop));
      found.push({ box: [b.x, b.y, b.x + b.width, b.y + b.height], score: face.score, probs: Array.from(probs.dataSync()) });
      tf.dispose([crop, probs]);
    }
    results.push(found);
    tf.dispose(tensor);
  }
} else {
  throw new Error(`unknown mode ${request.mode}`);
}
process.stdout.write(JSON.stringify(results));
