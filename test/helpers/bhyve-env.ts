// What every test of the bhyve path shares: the Linux pool-ctl, the image builder, and where the
// test image is cached (built once, reused while its inputs are unchanged).
import { join } from 'node:path';

const repo = join(import.meta.dirname, '..', '..');
export const POOL_CTL = join(repo, 'ops/pool-ctl/linux/coppice-bhyve-pool-ctl.sh');
export const BUILD_IMAGE = join(repo, 'ops/bhyve/build-image.sh');
export const IMAGES = process.env.COPPICE_TEST_BHYVE_IMAGES ?? '/var/tmp/coppice-test-bhyve-images';
export const BASE = process.env.COPPICE_TEST_BASE_ROOTFS ?? '/var/lib/coppice/templates/base-template';
export const KEY = '/root/coppice-signing/pool-key';
export const TEMPLATE = 'python-bhyve';
