// Shared by the browser pages (page.js, viewer.js): what every KVS WebRTC client calls on
// the control plane before it signals — DescribeSignalingChannel, then
// GetSignalingChannelEndpoint (WSS, HTTPS, WEBRTC) for its role — as the JS SDK's examples do.

import {
  DescribeSignalingChannelCommand,
  GetSignalingChannelEndpointCommand,
  KinesisVideoClient,
} from '@aws-sdk/client-kinesis-video';

/** The page's signing settings from its query string: `{ region, credentials }`. */
export function signing(cfg) {
  return { region: cfg.region, credentials: { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey } };
}

/** A KinesisVideo client of the page's reel (`cfg.endpoint`). */
export function kinesisVideo(cfg) {
  return new KinesisVideoClient({ ...signing(cfg), endpoint: cfg.endpoint });
}

/** The ARN of the signaling channel `cfg.channelName`. */
export async function channelArn(kvs, cfg) {
  const described = await kvs.send(new DescribeSignalingChannelCommand({ ChannelName: cfg.channelName }));
  return described.ChannelInfo.ChannelARN;
}

/** The channel's WSS, HTTPS and WEBRTC endpoints for `role`, keyed by protocol. */
export async function channelEndpoints(kvs, channelARN, role) {
  const ep = await kvs.send(
    new GetSignalingChannelEndpointCommand({
      ChannelARN: channelARN,
      SingleMasterChannelEndpointConfiguration: { Protocols: ['WSS', 'HTTPS', 'WEBRTC'], Role: role },
    }),
  );
  return Object.fromEntries(ep.ResourceEndpointList.map((e) => [e.Protocol, e.ResourceEndpoint]));
}
