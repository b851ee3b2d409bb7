// Clarifai's Node.js client predicting a video against a plain-text server:
//   node predict.js PORT KEY VIDEO SAMPLE_MS
// prints one line per frame ("TIME sfw=0.997 nsfw=0.003"); exit 1 with the status description
// on a Clarifai error, 2 on a gRPC error.
// ClarifaiStub.grpc(base) always speaks TLS, so the stub's own V2 class is built on an insecure
// channel; the request is the one Clarifai's docs send.
const fs = require("fs");
const { ClarifaiStub, grpc } = require("clarifai-nodejs-grpc");

const [port, key, videoPath, sampleMs] = process.argv.slice(2);
const V2 = ClarifaiStub.grpc().constructor;
const stub = new V2(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
const metadata = new grpc.Metadata();
metadata.set("authorization", "Key " + key);

stub.PostModelOutputs(
  {
    user_app_id: { user_id: "clarifai", app_id: "main" },
    model_id: "nsfw-recognition",
    inputs: [{ data: { video: { base64: fs.readFileSync(videoPath) } } }],
    model: { model_version: { output_info: { output_config: { sample_ms: Number(sampleMs) } } } },
  },
  metadata,
  (err, response) => {
    if (err) {
      console.error(err.message);
      process.exit(2);
    }
    if (response.status.code !== 10000) {
      console.error(response.status.description);
      process.exit(1);
    }
    for (const frame of response.outputs[0].data.frames) {
      const concepts = frame.data.concepts.map((c) => `${c.name}=${c.value.toFixed(3)}`);
      console.log(frame.frame_info.time, concepts.join(" "));
    }
  },
);
