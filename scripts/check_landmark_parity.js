/*
 * face-api's own FaceLandmark68Net on node, for scripts/check_landmark_parity.py (which writes this script's inputs,
 * runs it and compares). Not part of the test suite.
 *
 * Setup, once (tfjs's pure-JS cpu backend: no native tfjs-node binaries, which download at install):
 *   mkdir -p /tmp/fa && cd /tmp/fa && npm pack @vladmandic/face-api@1.7.15 && tar xzf vladmandic-face-api-1.7.15.tgz
 *   mkdir -p /tmp/fa-parity && cd /tmp/fa-parity && npm init -y \
 *     && npm install @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0
 * Run:
 *   node scripts/check_landmark_parity.js <face-api package dir> <dir holding node_modules> <work dir>
 *
 * face-api 1.7.15 was built against tfjs 4.22.0. Its dist/face-api.esm-nobundle.js imports tfjs by bundler paths
 * ("@tensorflow/tfjs/dist/index.js", ESM without file extensions) that node cannot load, so a copy with the bare
 * package names is written next to node_modules and imported from there; face-api's code is otherwise unchanged.
 *
 * Work dir in: cases.json ({name, height, width}[]), inputs.bin (N x 112 x 112 x 3 float32 RGB 0-255, the PyTorch
 * port's input images), crop_<i>.bin (height x width x 3 uint8 RGB face crops).
 * Work dir out: net.bin (N x 136 float32: face-api's net on inputs.bin, fractions of the square), tf_inputs.bin
 * (N x 112 x 112 x 3 float32: face-api's toBatchTensor of each crop) and pipeline.bin (N x 136 float32: face-api's
 * detectLandmarks on each crop, crop pixels), plus versions.json.
 */
'use strict';

const fs = require('fs');
const path = require('path');

async function loadFaceApi(packageDir, nodeDir) {
  const source = fs.readFileSync(path.join(packageDir, 'dist', 'face-api.esm-nobundle.js'), 'utf8');
  const patched = source.replace(/"(@tensorflow\/tfjs[a-z-]*)\/dist\/index\.js"/g, '"$1"');
  const target = path.join(nodeDir, 'face-api.esm-nobundle.mjs');
  fs.writeFileSync(target, patched);
  return import(target);
}

function readFloats(file) {
  const buffer = fs.readFileSync(file);
  // a copy: a small Buffer may sit at an offset in node's shared pool that is not a multiple of 4
  return new Float32Array(buffer.buffer.slice(buffer.byteOffset, buffer.byteOffset + buffer.length));
}

function writeFloats(file, arrays) {
  fs.writeFileSync(file, Buffer.concat(arrays.map((a) => Buffer.from(Float32Array.from(a).buffer))));
}

async function main() {
  const [packageDir, nodeDir, workDir] = process.argv.slice(2);
  if (!workDir) throw new Error('usage: check_landmark_parity.js <face-api package dir> <node dir> <work dir>');
  const faceapi = await loadFaceApi(packageDir, nodeDir);
  const { tf } = faceapi;
  await tf.setBackend('cpu');
  await tf.ready();

  const modelDir = path.join(packageDir, 'model');
  const manifest = JSON.parse(fs.readFileSync(path.join(modelDir, 'face_landmark_68_model-weights_manifest.json')));
  const blob = fs.readFileSync(path.join(modelDir, manifest[0].paths[0]));
  const weightMap = tf.io.decodeWeights(blob.buffer.slice(blob.byteOffset, blob.byteOffset + blob.length),
    manifest[0].weights);
  const net = faceapi.nets.faceLandmark68Net;
  net.loadFromWeightMap(weightMap);

  const cases = JSON.parse(fs.readFileSync(path.join(workDir, 'cases.json')));
  const inputs = readFloats(path.join(workDir, 'inputs.bin'));
  const size = 112 * 112 * 3;
  const netOut = [];
  const tfInputs = [];
  const pipeline = [];
  for (let i = 0; i < cases.length; i += 1) {
    // The same 112 x 112 image as the port: already square and 112 px, so toBatchTensor passes it through untouched
    // and only face-api's normalisation and net run.
    const image = tf.tensor3d(inputs.subarray(i * size, (i + 1) * size), [112, 112, 3], 'float32');
    const out = net.runNet(await faceapi.toNetInput(image));
    netOut.push(out.dataSync());

    // The face crop through face-api's whole path: padToSquare, resizeBilinear, net, postProcess.
    const { height, width } = cases[i];
    const pixels = new Uint8Array(fs.readFileSync(path.join(workDir, `crop_${i}.bin`)));
    const crop = tf.tensor3d(Int32Array.from(pixels), [height, width, 3], 'int32');
    const netInput = await faceapi.toNetInput(crop);
    tfInputs.push(netInput.toBatchTensor(112, true).dataSync());
    const marks = await net.detectLandmarks(crop);
    pipeline.push(marks.positions.flatMap((p) => [p.x, p.y]));
    tf.dispose([image, out, crop]);
  }
  writeFloats(path.join(workDir, 'net.bin'), netOut);
  writeFloats(path.join(workDir, 'tf_inputs.bin'), tfInputs);
  writeFloats(path.join(workDir, 'pipeline.bin'), pipeline);
  fs.writeFileSync(path.join(workDir, 'versions.json'),
    JSON.stringify({ faceapi: faceapi.version, tfjs: tf.version.tfjs, backend: tf.getBackend() }));
  console.log(`face-api ${faceapi.version}, tfjs ${tf.version.tfjs} (${tf.getBackend()}): ${cases.length} faces`);
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
