import test from 'ava';
import { blobReuse, parseBlobSources, withBlobSource, type BlobSource } from '../../../gateway/registry/blob-reuse.js';

const REG = 'https://registry.example.org';
const src = (repository: string, anonymous: boolean, registry = REG): BlobSource => ({
  registry,
  repository,
  anonymous,
});

test('a blob served anonymously from this repository is reused without asking', (t) => {
  t.is(blobReuse([src('team/app', true)], REG, 'team/app'), 'reuse');
});

test('a blob this registry served elsewhere or with credentials: the registry is asked', (t) => {
  t.is(blobReuse([src('team/app', false)], REG, 'team/app'), 'ask-registry');
  t.is(blobReuse([src('team/app', true)], REG, 'other/app'), 'ask-registry');
});

test('a blob this registry never served, or with no record, is downloaded', (t) => {
  t.is(blobReuse([src('team/app', true, 'https://mirror.example.org')], REG, 'team/app'), 'download');
  t.is(blobReuse([], REG, 'team/app'), 'download');
});

test('sources: an anonymous record supersedes a credentialed one, and nothing is duplicated', (t) => {
  const one = withBlobSource([], src('a', false));
  t.deepEqual(withBlobSource(one, src('a', false)), one);
  t.deepEqual(withBlobSource(one, src('a', true)), [src('a', true)]);
  t.deepEqual(withBlobSource([src('a', true)], src('a', false)), [src('a', true)]);
  t.deepEqual(withBlobSource(one, src('b', true)), [src('a', false), src('b', true)]);
});

test('an unreadable sources file counts as no record', (t) => {
  t.deepEqual(parseBlobSources('{not json'), []);
  t.deepEqual(parseBlobSources('{"registry":"x"}'), []);
  t.deepEqual(parseBlobSources(JSON.stringify([src('a', true), { registry: 1 }])), [src('a', true)]);
});
