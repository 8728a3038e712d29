// The plates CSV (SPEC.md, "Plates CSV"): what is accepted, and that every refusal is a
// UsageError naming the file and the line.
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { UsageError } from '../../src/errors.js';
import { parsePlatesCsv, readPlatesCsv } from '../../src/plates/plates-csv.js';

const FILE = 'plates.csv';

/** Asserts that parsing `text` throws a UsageError whose message is exactly `message`. */
function refuses(text: string, message: string | RegExp): void {
  assert.throws(
    () => parsePlatesCsv(text, FILE),
    (err: unknown) => {
      assert.ok(err instanceof UsageError, `not a UsageError: ${String(err)}`);
      assert.equal(err.name, 'UsageError');
      if (typeof message === 'string') assert.equal(err.message, message);
      else assert.match(err.message, message);
      assert.ok(!err.message.includes('\n'), `message has several lines: ${err.message}`);
      return true;
    },
  );
}

describe('parsePlatesCsv accepts', () => {
  test('the runbook example', () => {
    assert.deepEqual(parsePlatesCsv('plate_id,plate_id_full\n20585,20585\n20586,20586\n', FILE), [
      { plateId: '20585', plateIdFull: '20585', line: 2 },
      { plateId: '20586', plateIdFull: '20586', line: 3 },
    ]);
  });

  test('no newline at the end', () => {
    assert.deepEqual(parsePlatesCsv('plate_id,plate_id_full\n20585,20585', FILE), [
      { plateId: '20585', plateIdFull: '20585', line: 2 },
    ]);
  });

  test('a plate_id_full with a space, and a quoted field with a comma', () => {
    const text =
      'plate_id,plate_id_full\n' +
      'BR00092655,BR00092655__2017-12-10T12_48_16-Measurement 1\n' +
      '"BR1,2","BR1,2__full, with comma"\n' +
      'q,"say ""hi"""\n';
    assert.deepEqual(parsePlatesCsv(text, FILE), [
      {
        plateId: 'BR00092655',
        plateIdFull: 'BR00092655__2017-12-10T12_48_16-Measurement 1',
        line: 2,
      },
      { plateId: 'BR1,2', plateIdFull: 'BR1,2__full, with comma', line: 3 },
      { plateId: 'q', plateIdFull: 'say "hi"', line: 4 },
    ]);
  });

  test('a UTF-8 BOM before the header', () => {
    assert.deepEqual(parsePlatesCsv('\ufeffplate_id,plate_id_full\n20585,20585\n', FILE), [
      { plateId: '20585', plateIdFull: '20585', line: 2 },
    ]);
  });

  test('a UTF-8 BOM before a quoted header', () => {
    assert.deepEqual(parsePlatesCsv('\ufeff"plate_id","plate_id_full"\n"1","2"\n', FILE), [
      { plateId: '1', plateIdFull: '2', line: 2 },
    ]);
  });

  test('CRLF line ends', () => {
    assert.deepEqual(
      parsePlatesCsv('plate_id,plate_id_full\r\n20585,20585\r\n20586,x y\r\n', FILE),
      [
        { plateId: '20585', plateIdFull: '20585', line: 2 },
        { plateId: '20586', plateIdFull: 'x y', line: 3 },
      ],
    );
  });

  test('BOM and CRLF together', () => {
    assert.deepEqual(parsePlatesCsv('\ufeffplate_id,plate_id_full\r\n1,2\r\n', FILE), [
      { plateId: '1', plateIdFull: '2', line: 2 },
    ]);
  });

  test('blank lines are ignored, and line numbers still count them', () => {
    const text = '\nplate_id,plate_id_full\n\n20585,20585\n\n\n20586,20586\n\n';
    assert.deepEqual(parsePlatesCsv(text, FILE), [
      { plateId: '20585', plateIdFull: '20585', line: 4 },
      { plateId: '20586', plateIdFull: '20586', line: 7 },
    ]);
  });

  test('non-ASCII ids', () => {
    assert.deepEqual(parsePlatesCsv('plate_id,plate_id_full\nPlätte,Plätte 顕微鏡\n', FILE), [
      { plateId: 'Plätte', plateIdFull: 'Plätte 顕微鏡', line: 2 },
    ]);
  });
});

describe('parsePlatesCsv refuses, naming file and line', () => {
  test('wrong header', () => {
    refuses(
      'plate,plate_id_full\n20585,20585\n',
      'plates.csv:1: header is "plate,plate_id_full"; expected "plate_id,plate_id_full"',
    );
    refuses(
      'plate_id_full,plate_id\n20585,20585\n',
      'plates.csv:1: header is "plate_id_full,plate_id"; expected "plate_id,plate_id_full"',
    );
    refuses(
      '20585,20585\n20586,20586\n',
      'plates.csv:1: header is "20585,20585"; expected "plate_id,plate_id_full"',
    );
    refuses(
      'plate_id,plate_id_full,notes\n1,1,x\n',
      'plates.csv:1: header is "plate_id,plate_id_full,notes"; expected "plate_id,plate_id_full"',
    );
    refuses(
      'plate_id\n1\n',
      'plates.csv:1: header is "plate_id"; expected "plate_id,plate_id_full"',
    );
    // the header is on line 3 after two blank lines
    refuses(
      '\n\nplate;plate_id_full\n',
      'plates.csv:3: header is "plate;plate_id_full"; expected "plate_id,plate_id_full"',
    );
  });

  test('unterminated quote on the last line', () => {
    refuses('plate_id,plate_id_full\n1,1\n"2,2\n', /^plates\.csv:3: not valid CSV: .*[Qq]uote/);
  });

  test('unterminated quote names the file and a line', () => {
    refuses(
      'plate_id,plate_id_full\n1,1\n"2,2\n3,3\n4,4\n5,5\n',
      /^plates\.csv:\d+: not valid CSV: .*[Qq]uote/,
    );
  });

  test('unterminated quote names the line where the quote opens', () => {
    refuses('plate_id,plate_id_full\n1,1\n"2,2\n3,3\n4,4\n5,5\n', /^plates\.csv:3: /);
  });

  test('a stray quote inside a field', () => {
    refuses('plate_id,plate_id_full\n1,1\n2,2"x\n', /^plates\.csv:3: not valid CSV: /);
  });

  test('empty id', () => {
    refuses('plate_id,plate_id_full\n20585,20585\n,20586\n', 'plates.csv:3: plate_id "" is empty');
    refuses('plate_id,plate_id_full\n20585,\n', 'plates.csv:2: plate_id_full "" is empty');
    refuses('plate_id,plate_id_full\n"",x\n', 'plates.csv:2: plate_id "" is empty');
  });

  test('duplicate plate_id names the earlier line', () => {
    refuses(
      'plate_id,plate_id_full\n20585,20585\n20586,20586\n\n20585,20585b\n',
      'plates.csv:5: plate_id "20585" already on line 2',
    );
  });

  test('duplicate plate_id_full names the earlier line', () => {
    refuses(
      'plate_id,plate_id_full\na,x\nb,y\nc,x\n',
      'plates.csv:4: plate_id_full "x" already on line 2; two plates cannot share one images folder',
    );
  });

  test('id with "/"', () => {
    refuses('plate_id,plate_id_full\na/b,ab\n', 'plates.csv:2: plate_id "a/b" contains "/"');
    refuses(
      'plate_id,plate_id_full\nab,../../x\n',
      'plates.csv:2: plate_id_full "../../x" contains "/"',
    );
  });

  test('id with ".."', () => {
    refuses('plate_id,plate_id_full\n1,1\n..,x\n', 'plates.csv:3: plate_id ".." contains ".."');
    refuses('plate_id,plate_id_full\nx,a..b\n', 'plates.csv:2: plate_id_full "a..b" contains ".."');
    refuses('plate_id,plate_id_full\n.,x\n', 'plates.csv:2: plate_id "." is "."');
  });

  test('id with a control character', () => {
    refuses(
      'plate_id,plate_id_full\na\tb,x\n',
      'plates.csv:2: plate_id "a\\tb" contains a control character',
    );
    refuses(
      'plate_id,plate_id_full\nx,"a\nb"\n',
      'plates.csv:3: plate_id_full "a\\nb" contains a control character',
    );
    refuses(
      'plate_id,plate_id_full\nx,a\u0001b\n',
      'plates.csv:2: plate_id_full "a\\u0001b" contains a control character',
    );
  });

  test('id with surrounding whitespace', () => {
    refuses(
      'plate_id,plate_id_full\n20585 ,20585\n',
      'plates.csv:2: plate_id "20585 " has leading or trailing whitespace',
    );
    refuses(
      'plate_id,plate_id_full\n20585, 20585\n',
      'plates.csv:2: plate_id_full " 20585" has leading or trailing whitespace',
    );
    refuses(
      'plate_id,plate_id_full\n1,1\n" 2",2\n',
      'plates.csv:3: plate_id " 2" has leading or trailing whitespace',
    );
  });

  test('header only, or nothing at all', () => {
    refuses('plate_id,plate_id_full\n', 'plates.csv: no plates after the header');
    refuses('plate_id,plate_id_full\n\n\n', 'plates.csv: no plates after the header');
    refuses('', 'plates.csv: empty; expected the header "plate_id,plate_id_full"');
    refuses('\n\n', 'plates.csv: empty; expected the header "plate_id,plate_id_full"');
  });

  test('extra column', () => {
    refuses(
      'plate_id,plate_id_full\n20585,20585\n20586,20586,x\n',
      /^plates\.csv:3: not valid CSV: .*expect 2, got 3/,
    );
  });

  test('missing column', () => {
    refuses(
      'plate_id,plate_id_full\n20585,20585\n20586\n',
      /^plates\.csv:3: not valid CSV: .*expect 2, got 1/,
    );
  });

  test('the file name is the one given', () => {
    assert.throws(() => parsePlatesCsv('plate_id,plate_id_full\n,x\n', '/data/my plates.csv'), {
      name: 'UsageError',
      message: '/data/my plates.csv:2: plate_id "" is empty',
    });
  });
});

describe('readPlatesCsv', () => {
  let dir = '';
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'imgbackup-plates-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('reads and parses a file', async () => {
    const file = join(dir, 'ok.csv');
    await writeFile(file, '\ufeffplate_id,plate_id_full\r\n20585,20585\r\n');
    assert.deepEqual(await readPlatesCsv(file), [
      { plateId: '20585', plateIdFull: '20585', line: 2 },
    ]);
  });

  test('a refusal names the path', async () => {
    const file = join(dir, 'bad.csv');
    await writeFile(file, 'plate_id,plate_id_full\n1,1\n1,2\n');
    await assert.rejects(readPlatesCsv(file), {
      name: 'UsageError',
      message: `${file}:3: plate_id "1" already on line 2`,
    });
  });

  test('a missing file is a one-line UsageError naming the file', async () => {
    const file = join(dir, 'missing.csv');
    await assert.rejects(readPlatesCsv(file), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.equal(err.message, `${file}: cannot read plates CSV (no such file)`);
      return true;
    });
  });

  test('a directory is a one-line UsageError naming it', async () => {
    await assert.rejects(readPlatesCsv(dir), (err: unknown) => {
      assert.ok(err instanceof UsageError);
      assert.equal(err.message, `${dir}: cannot read plates CSV (is a directory)`);
      return true;
    });
  });
});
